"""A tiny local store for the Cloudflare Access service token of a cluster.

Cloudflare shows a service token's ``client_secret`` only when the token is created (or rotated), so the
deploy keeps it here: one JSON file per (Cloudflare account, tunnel name) under
``$CODECAPSULE_CONFIG_DIR/secrets`` (default ``~/.config/codecapsule/secrets``). The directory is created
with mode 0700 and every file with mode 0600 (written to a private temporary file, then renamed, so a
reader never sees half a file and the secret is never world-readable, not even for a moment).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .._errors import ConfigurationError
from . import env

__all__ = [
    "ServiceToken",
    "config_dir",
    "delete_service_token",
    "load_service_token",
    "save_service_token",
    "service_token_path",
]

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FORMAT_VERSION = 1


@dataclass(frozen=True, repr=False)
class ServiceToken:
    """A Cloudflare Access service token. ``repr``/``str`` show the client id only, never the secret.

    Clients send it as the ``CF-Access-Client-Id`` and ``CF-Access-Client-Secret`` headers.
    """

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ServiceToken(client_id={self.client_id!r}, client_secret=<hidden>)"

    __str__ = __repr__

    @property
    def headers(self) -> dict[str, str]:
        """The request headers Cloudflare Access checks (contains the secret: never log them)."""
        return {"CF-Access-Client-Id": self.client_id, "CF-Access-Client-Secret": self.client_secret}


def config_dir() -> Path:
    """``$CODECAPSULE_CONFIG_DIR`` or ``~/.config/codecapsule``."""
    return env.config_dir()


def service_token_path(account_id: str, tunnel_name: str) -> Path:
    """Where the service token of this (account, tunnel) is kept."""
    for label, value in (("account id", account_id), ("tunnel name", tunnel_name)):
        if not _SAFE.match(value):
            # Both end up in a file name: refuse anything that could escape the directory.
            raise ConfigurationError(
                f"the Cloudflare {label} {value!r} cannot be used in a file name; use letters, digits, '.', '_' or '-'."
            )
    return config_dir() / "secrets" / f"cloudflare-access-{account_id}-{tunnel_name}.json"


def load_service_token(account_id: str, tunnel_name: str) -> ServiceToken | None:
    """The saved token, or None when nothing is saved."""
    path = service_token_path(account_id, tunnel_name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the saved Access service token at {path} ({exc.strerror}); fix the file's "
            "permissions, or delete it and run the deploy again (the token will be rotated)."
        ) from None
    try:
        data = json.loads(text)
        return ServiceToken(client_id=str(data["client_id"]), client_secret=str(data["client_secret"]))
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(
            f"the saved Access service token at {path} is damaged; delete the file and run the deploy "
            "again (the token will be rotated)."
        ) from None


def save_service_token(account_id: str, tunnel_name: str, token: ServiceToken) -> Path:
    """Save (or replace) the token; returns the file's path. File 0600, directory 0700."""
    path = service_token_path(account_id, tunnel_name)
    _private_dir(path.parent)
    payload = {
        "version": _FORMAT_VERSION,
        "account_id": account_id,
        "tunnel_name": tunnel_name,
        "client_id": token.client_id,
        "client_secret": token.client_secret,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # mkstemp creates the file with mode 0600 from the start.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def delete_service_token(account_id: str, tunnel_name: str) -> bool:
    """Forget the token; True if a file was removed."""
    path = service_token_path(account_id, tunnel_name)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0700 and make sure it is 0700."""
    try:
        # Missing ancestors (e.g. the config dir itself) are private too; an existing one is left alone.
        for missing in reversed([directory, *directory.parents]):
            if not missing.exists():
                missing.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask and ignored if it existed
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the private directory {directory} ({exc.strerror}); set CODECAPSULE_CONFIG_DIR "
            "to a directory you can write."
        ) from None
