"""Keeping secrets out of text: URLs without their password, and known secret values blanked (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "display_url", "redact", "url_secrets"]

REDACTED = "[redacted]"


def display_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, safe for messages, logs and reprs."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # an unparsable port: drop everything up to the last '@' of the authority instead
        scheme, sep, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The user name and password in a URL, if any (to redact wherever they may be echoed)."""
    if not url:
        return ()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    return tuple(s for s in (parts.password, parts.username) if s)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (longest first; values shorter than 4 characters are not secrets) replaced."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
