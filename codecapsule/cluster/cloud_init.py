"""Render the cloud-init file every Piston VM boots with, from a :class:`ClusterSpec` and the tunnel token.

The template lives in ``cloud_init/codecapsule.yaml.tmpl`` in the repository and is shipped inside the wheel
as
``codecapsule/_cloud_init/``. Placeholders look like ``@@{name}``; every value is validated here first (single
line, printable ASCII, a strict character set) and shell-quoted where it lands in a script, so nothing in a
spec
can break the YAML or inject a command.

The rendered text contains the tunnel token (a secret): callers put it into the VMs' custom data and never
print it.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import InvalidRequest
from ..engines.piston_protocol import install_answer_shell

if TYPE_CHECKING:
    from .spec import ClusterSpec

__all__ = [
    "TEMPLATE_NAME",
    "custom_data_sha256",
    "load_template",
    "render_cloud_init",
    "runtimes_tag",
    "validate_runtime",
]

TEMPLATE_NAME = "codecapsule.yaml.tmpl"

_PLACEHOLDER = re.compile(r"@@\{([a-z_]+)\}")
# A Cloudflare tunnel token is base64 of a small JSON document.
_TOKEN = re.compile(r"^[A-Za-z0-9+/=_-]{16,8192}$")
_LANGUAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]{0,63}$")
_LIMIT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]{0,4096}$")
_IMAGE = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?"  # registry or first path component
    r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"  # more path components
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # tag
    r"(?:@sha256:[0-9a-f]{64})?$"  # digest
)
# Settings the container layout depends on: Piston must listen on 0.0.0.0 *inside* the container for Docker's
# loopback-only port mapping to reach it, and its data directory is where the packages volume is mounted.
_RESERVED_LIMITS = {"BIND_ADDRESS", "DATA_DIRECTORY"}


def load_template() -> str:
    """The template text: from the installed package, else from the repository's ``cloud_init/`` folder."""
    try:
        resource = resources.files("codecapsule").joinpath("_cloud_init", TEMPLATE_NAME)
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        pass
    source_checkout = Path(__file__).resolve().parents[2] / "cloud_init" / TEMPLATE_NAME
    if source_checkout.is_file():
        return source_checkout.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"the cloud-init template {TEMPLATE_NAME} is missing: it should be inside the installed package "
        f"(codecapsule/_cloud_init/) or at {source_checkout}; reinstall codecapsule."
    )


def validate_runtime(language: str, version: str) -> tuple[str, str]:
    """Check a Piston package name and version (e.g. ``("python", "3.12.0")``); returns them unchanged."""
    if not isinstance(language, str) or not _LANGUAGE.match(language):
        raise InvalidRequest(
            f"runtime language {language!r} is not a Piston package name (letters, digits, '+', '.', '_', "
            f"'-'), "
            "e.g. 'python', 'node', 'gcc', 'java', 'rust'."
        )
    if not isinstance(version, str) or not _VERSION.match(version):
        raise InvalidRequest(
            f"runtime version {version!r} for {language} is not a package version such as '3.12.0' "
            "(an exact version: the packages API does not accept '*')."
        )
    return language, version


def _validated_runtimes(spec: ClusterSpec) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for language, version in spec.runtimes:
        pair = validate_runtime(language, version)
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def _validated_limits(spec: ClusterSpec) -> list[tuple[str, str]]:
    out = []
    names: set[str] = set()
    for name, value in spec.piston_limits:
        if name.startswith("PISTON_"):
            raise InvalidRequest(f"piston_limits: give {name!r} without the PISTON_ prefix ({name[7:]!r}).")
        if not _LIMIT_NAME.match(name):
            raise InvalidRequest(
                f"piston_limits: {name!r} is not a Piston setting name (upper case, e.g. 'OUTPUT_MAX_SIZE')."
            )
        if name in _RESERVED_LIMITS:
            raise InvalidRequest(
                f"piston_limits: {name} cannot be changed: the VM layout depends on it "
                "(Piston is published on 127.0.0.1:2000 of the VM and keeps its packages in a volume)."
            )
        if name in names:
            raise InvalidRequest(f"piston_limits: {name} is given twice.")
        if not _PRINTABLE.match(value):
            raise InvalidRequest(
                f"piston_limits: the value of {name} must be one line of printable ASCII (at most 4096 "
                f"characters)."
            )
        names.add(name)
        out.append((name, value))
    return out


def _substitute(template: str, values: dict[str, str | list[str]]) -> str:
    """Replace ``@@{name}`` placeholders; a list value becomes lines at the placeholder's indentation."""

    def indent_of(match: re.Match[str]) -> str:
        line_start = template.rfind("\n", 0, match.start()) + 1
        prefix = template[line_start : match.start()]
        return prefix if prefix.strip() == "" else ""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(
                f"cloud-init template placeholder @@{{{name}}} has no value (template and code differ)"
            )
        value = values[name]
        if isinstance(value, list):
            return ("\n" + indent_of(match)).join(value)
        return value

    rendered = _PLACEHOLDER.sub(replace, template)
    if "@@{" in rendered:
        raise ValueError("cloud-init template has a malformed placeholder")
    return rendered


def render_cloud_init(spec: ClusterSpec, tunnel_token: str) -> str:
    """The exact ``#cloud-config`` text for the VMs' custom data (holds the tunnel token: never print it)."""
    if not isinstance(tunnel_token, str) or not _TOKEN.match(tunnel_token):
        # Never echo the value: it is a secret.
        raise InvalidRequest(
            "the tunnel token has an unexpected format (expected the base64 text Cloudflare returns for a "
            "remotely managed tunnel); fetch it again with TunnelProvider.tunnel_token()."
        )
    if not _IMAGE.match(spec.piston_image):
        raise InvalidRequest(
            f"piston_image {spec.piston_image!r} is not a container image reference such as "
            "'ghcr.io/engineer-man/piston' or 'ghcr.io/engineer-man/piston:latest'."
        )
    runtimes = _validated_runtimes(spec)
    limits = _validated_limits(spec)
    env_flags = " ".join(f"-e {shlex.quote(f'PISTON_{name}={value}')}" for name, value in limits)
    values: dict[str, str | list[str]] = {
        "tunnel_token": tunnel_token,
        "piston_image": shlex.quote(spec.piston_image),
        "piston_env_flags": env_flags,
        "runtimes_lines": [f"{language} {version}" for language, version in runtimes] or ["# (none)"],
        # what Piston's packages API answers mean: the one table in codecapsule.engines.piston_protocol
        "package_answer_lines": install_answer_shell("code", "/tmp/codecapsule-package.out"),
    }
    return _substitute(load_template(), values)


def custom_data_sha256(custom_data: str) -> str:
    """The hex SHA-256 of the custom data: a VMSS tag that tells a deploy whether the model changed."""
    return hashlib.sha256(custom_data.encode("utf-8")).hexdigest()


def runtimes_tag(runtimes: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """A sorted ``language=version`` list for the ``codecapsule-runtimes`` tag (at most 256 characters)."""
    text = ",".join(sorted(f"{language}={version}" for language, version in runtimes))
    return text if len(text) <= 256 else text[:253] + "..."
