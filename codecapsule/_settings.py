"""The one place that reads configuration: keyword arguments over ``CODECAPSULE_*`` environment variables.

| variable                              | meaning                                                       |
|---------------------------------------|---------------------------------------------------------------|
| ``CODECAPSULE_PISTON_URL``            | Piston base URL (the host; the client adds ``/api/v2/...``)   |
| ``CODECAPSULE_ACCESS_CLIENT_ID``      | Cloudflare Access service-token id (header CF-Access-Client-Id) |
| ``CODECAPSULE_ACCESS_CLIENT_SECRET``  | its secret (never shown)                                      |
| ``CODECAPSULE_ENGINE``                | ``auto`` (default), ``local`` or ``piston``                   |
| ``CODECAPSULE_TIMEOUT``               | default run time limit, e.g. ``5`` or ``"500ms"``             |
| ``CODECAPSULE_MEMORY``                | default memory limit, e.g. ``"256MB"``                        |
| ``CODECAPSULE_DATABASE``              | DuckDB database file for SQL (default ``:memory:``)           |
| ``CODECAPSULE_DATABASE_READ_ONLY``    | ``1`` to open it read-only                                    |
| ``CODECAPSULE_SQL_SANDBOX``           | ``0`` to switch DuckDB's sandbox off (trusted use only)       |
| ``CODECAPSULE_SQL_MEMORY``            | DuckDB memory limit (default ``"1GB"``)                       |
| ``CODECAPSULE_SQL_DATA``              | directories SQL may read (course data), ``os.pathsep``-separated |
| ``CODECAPSULE_MAX_ROWS``              | rows of a SQL result kept for display (default 1000)          |
| ``CODECAPSULE_RETRIES``               | Piston retries on transient failures (default 3)              |
| ``CODECAPSULE_REQUEST_TIMEOUT``       | seconds to wait for a Piston answer beyond the job's limits   |
| ``CODECAPSULE_WARM``                  | ``0`` to turn the local engine's warm paths off (warm javac,  |
|                                       | Java CDS archive, C/C++ precompiled headers, compile cache)   |
| ``CODECAPSULE_CACHE_DIR``             | the local engine's cache directory (C/C++ compile cache and   |
|                                       | precompiled headers); default /var/cache/codecapsule as root, |
|                                       | else $XDG_CACHE_HOME/codecapsule (~/.cache/codecapsule)       |
| ``CODECAPSULE_COMPILE_CACHE_SIZE``    | the C/C++ compile cache's bound, e.g. ``"256MB"`` (default);  |
|                                       | least recently used entries are evicted past it               |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from ._errors import ConfigurationError, InvalidRequest
from ._units import parse_duration, parse_size

EngineChoice = Literal["auto", "local", "piston"]
_ENGINES = ("auto", "local", "piston")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigurationError(f"{name}={value!r}: use 1/0, true/false, yes/no or on/off.")


#: The C/C++ compile cache's default bound (least recently used entries go first past it).
DEFAULT_COMPILE_CACHE_SIZE = 256 * 1024 * 1024


def local_cache_dir(env: Mapping[str, str] | None = None) -> str:
    """The local engine's cache directory: ``CODECAPSULE_CACHE_DIR``, else a per-machine default."""
    env = os.environ if env is None else env
    if env.get("CODECAPSULE_CACHE_DIR"):
        return os.path.abspath(env["CODECAPSULE_CACHE_DIR"])
    if os.geteuid() == 0:  # the sandbox's uids must traverse to the precompiled headers: not under /root
        return "/var/cache/codecapsule"
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "codecapsule")


def local_cache_size(env: Mapping[str, str] | None = None) -> int:
    """The compile cache's bound in bytes: ``CODECAPSULE_COMPILE_CACHE_SIZE``, else the default."""
    env = os.environ if env is None else env
    raw = env.get("CODECAPSULE_COMPILE_CACHE_SIZE")
    if not raw:
        return DEFAULT_COMPILE_CACHE_SIZE
    return parse_size(raw, name="CODECAPSULE_COMPILE_CACHE_SIZE")


def sql_directories(value: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[str, ...]:
    """The SQL course-data allowlist as absolute paths; each must be an existing directory."""
    items = [value] if isinstance(value, str | os.PathLike) else list(value)
    resolved = []
    for item in items:
        path = os.path.abspath(os.fspath(item))
        if not os.path.isdir(path):
            raise ConfigurationError(
                f"SQL data directory {os.fspath(item)!r} does not exist (or is not a directory): create it or fix "
                "the path (sql_data / CODECAPSULE_SQL_DATA / Capsule.sql_data)."
            )
        resolved.append(path)
    return tuple(resolved)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of a Client. Secrets are excluded from ``repr``."""

    piston_url: str | None = None
    access_client_id: str | None = None
    access_client_secret: str | None = field(default=None, repr=False)
    engine: EngineChoice = "auto"
    timeout: float | None = None
    memory: int | None = None
    database: str = ":memory:"
    database_read_only: bool = False
    sql_sandbox: bool = True
    sql_memory: int = 1_000_000_000
    sql_data: tuple[str, ...] = ()  # directories of read-only course data for SQL (read_csv('data/x.csv'))
    max_rows: int = 1000
    retries: int = 3
    request_timeout: float = 30.0
    # the local engine's warm paths: a javac that stays up, the run JVM's CDS archive, precompiled headers and the
    # compile cache. Off (False) = every job compiles cold, as the first job of a process does; Results are the same.
    warm: bool = True
    cache_dir: str | None = None  # the local engine's cache directory (None: see local_cache_dir)
    compile_cache_size: int = DEFAULT_COMPILE_CACHE_SIZE  # bytes; the C/C++ compile cache's bound

    def __post_init__(self) -> None:
        if self.engine not in _ENGINES:
            raise InvalidRequest(f"engine must be one of {', '.join(_ENGINES)}, not {self.engine!r}.")
        if self.piston_url is not None:
            url = self.piston_url.strip().rstrip("/")
            if not url:
                object.__setattr__(self, "piston_url", None)
            elif not url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"piston_url {self.piston_url!r} must start with https:// (or http:// for a local server)."
                )
            else:
                object.__setattr__(self, "piston_url", url)
        if (self.access_client_id is None) != (self.access_client_secret is None):
            raise ConfigurationError(
                "set both the Cloudflare Access client id and secret (CODECAPSULE_ACCESS_CLIENT_ID and "
                "CODECAPSULE_ACCESS_CLIENT_SECRET), or neither."
            )
        if self.timeout is not None:
            object.__setattr__(self, "timeout", parse_duration(self.timeout, name="timeout"))
        if self.memory is not None:
            object.__setattr__(self, "memory", parse_size(self.memory, name="memory"))
        object.__setattr__(self, "sql_memory", parse_size(self.sql_memory, name="sql_memory"))
        object.__setattr__(self, "sql_data", sql_directories(self.sql_data))
        object.__setattr__(self, "compile_cache_size", parse_size(self.compile_cache_size, name="compile_cache_size"))
        if self.max_rows < 1:
            raise InvalidRequest(f"max_rows must be at least 1, not {self.max_rows}.")
        if self.retries < 0:
            raise InvalidRequest(f"retries must be ≥ 0, not {self.retries}.")

    def __repr__(self) -> str:
        # the URL without any user:password part; fields with repr=False (the Access secret) left out
        from ._redact import display_url

        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.repr:
                shown = display_url(value) if f.name == "piston_url" and value else value
                parts.append(f"{f.name}={shown!r}")
        return f"Settings({', '.join(parts)})"

    @property
    def use_piston(self) -> bool:
        """Whether non-SQL languages go to Piston."""
        if self.engine == "piston":
            return True
        return self.engine == "auto" and self.piston_url is not None

    @property
    def access_headers(self) -> dict[str, str]:
        if self.access_client_id and self.access_client_secret:
            return {
                "CF-Access-Client-Id": self.access_client_id,
                "CF-Access-Client-Secret": self.access_client_secret,
            }
        return {}

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CODECAPSULE_*`` variables, with keyword overrides (None = not given) on top."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CODECAPSULE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            name = f"CODECAPSULE_{f.name.upper()}"
            if f.name == "sql_data":
                values[f.name] = tuple(d for d in raw.split(os.pathsep) if d)
            elif f.name in ("database_read_only", "sql_sandbox", "warm"):
                values[f.name] = _bool(raw, name)
            elif f.name in ("max_rows", "retries"):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigurationError(f"{name}={raw!r} must be a whole number.") from None
            elif f.name in ("request_timeout", "timeout"):
                values[f.name] = parse_duration(raw, name=name)
            elif f.name in ("memory", "sql_memory", "compile_cache_size"):
                values[f.name] = parse_size(raw, name=name)
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
