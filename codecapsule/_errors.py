"""Every exception CodeCapsule raises on purpose.

A student's program that crashes, loops or prints too much is *not* an error: it is a
:class:`~codecapsule.Result` with a verdict. Exceptions are for failures of the service or
of the caller's request, and every message says what happened and what to do about it.
Secrets (tokens, service-token secrets) never appear in a message.

Exception tree::

    CodeCapsuleError
    ├── ConfigurationError                 settings missing or contradictory
    │   ├── MissingCredentials             a token / subscription / account id is not set
    │   └── NoEndpointConfigured           Piston was asked for but no URL is set
    ├── InvalidRequest (ValueError)        the request itself is wrong, nothing was sent
    │   ├── UnknownLanguage                not a language CodeCapsule knows (lists the known ones)
    │   ├── InvalidLimit                   a limit that is negative, unparseable or out of range
    │   └── InvalidTestSuite               a grading test file that is not valid (names file and place)
    ├── EngineError                        the engine could not run the job at all
    │   ├── ToolchainMissing               local engine: compiler/interpreter not installed
    │   └── SandboxError                   local engine: the sandbox could not be set up
    ├── PistonError                        talking to a Piston server failed
    │   ├── TransportError                 no HTTP answer
    │   │   ├── DNSFailure                 host name does not resolve (tunnel CNAME missing?)
    │   │   ├── TLSFailure                 certificate / handshake problem
    │   │   ├── ConnectFailure             refused / reset / unreachable
    │   │   └── RequestTimeout             no answer within the deadline (overloaded?)
    │   ├── HTTPStatusError                an HTTP answer that is an error
    │   │   ├── BadRequest                 400 validation message from Piston
    │   │   │   └── RuntimeNotInstalled    400 "<lang>-<ver> runtime is unknown"
    │   │   ├── ClientBug                  400 {"stack": ...}: the client sent malformed JSON
    │   │   ├── AccessDenied               401/403 from Cloudflare Access (service token?)
    │   │   ├── WrongEndpoint              404 on the API path: base URL is wrong
    │   │   ├── PayloadTooLarge            413
    │   │   ├── UnsupportedMediaType       415
    │   │   ├── RateLimited                429 (retry_after)
    │   │   ├── PackageError               packages API refused (already installed, not found...)
    │   │   ├── OriginDown                 502/503: tunnel up, Piston or cloudflared down on the VMs
    │   │   ├── TunnelNotConnected         530 / 1033: no connector for the tunnel
    │   │   └── OriginTimeout              524: Piston did not answer in time (scale up)
    │   └── ProtocolError                  an answer whose shape is not Piston's (quotes it)
    └── ClusterError                       deploying or operating the cloud side failed
        ├── CloudAPIError                  Azure or Cloudflare refused a call (status, code, message)
        ├── OperationFailed                a long-running operation ended Failed
        ├── ConfirmationRequired           a destructive call without the right confirmation
        └── OperationInProgress            the panel/cluster is already running an operation

In notebooks, ``codecapsule.magics`` adds ``MagicFailure(CodeCapsuleError)`` (a cell that must stop "Run All",
shown as one line) and its subclass ``UnexpectedVerdict`` (``--expect-verdict`` / ``--raise``; keeps ``.result``).
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BadRequest",
    "ClientBug",
    "CloudAPIError",
    "ClusterError",
    "CodeCapsuleError",
    "ConfigurationError",
    "ConfirmationRequired",
    "ConnectFailure",
    "DNSFailure",
    "EngineError",
    "HTTPStatusError",
    "InvalidLimit",
    "InvalidRequest",
    "InvalidTestSuite",
    "MissingCredentials",
    "NoEndpointConfigured",
    "OperationFailed",
    "OperationInProgress",
    "OriginDown",
    "OriginTimeout",
    "PackageError",
    "PayloadTooLarge",
    "PistonError",
    "ProtocolError",
    "RateLimited",
    "RequestTimeout",
    "RuntimeNotInstalled",
    "SandboxError",
    "TLSFailure",
    "ToolchainMissing",
    "TransportError",
    "TunnelNotConnected",
    "UnknownLanguage",
    "UnsupportedMediaType",
    "WrongEndpoint",
]


class CodeCapsuleError(Exception):
    """Base class of every error CodeCapsule raises on purpose."""


# -- configuration -----------------------------------------------------------------------------------


class ConfigurationError(CodeCapsuleError):
    """Settings are missing or contradictory."""


class MissingCredentials(ConfigurationError):
    """A credential or identifier needed for a cloud call is not set (checked before any call)."""


class NoEndpointConfigured(ConfigurationError):
    """The Piston engine was requested but no URL is configured."""


# -- the request -------------------------------------------------------------------------------------


class InvalidRequest(CodeCapsuleError, ValueError):
    """The request is wrong before anything runs (also a ``ValueError``)."""


class UnknownLanguage(InvalidRequest):
    """A language name that no engine knows."""

    def __init__(self, message: str, *, language: str = "", available: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.language = language
        self.available = available


class InvalidLimit(InvalidRequest):
    """A limit that cannot be used (negative, unparseable, out of range)."""


class InvalidTestSuite(InvalidRequest):
    """A grading test file (or list of TestCase) that cannot be used; the message names the file and the place."""


# -- engines -----------------------------------------------------------------------------------------


class EngineError(CodeCapsuleError):
    """The engine could not run the job at all (not the program's fault)."""


class ToolchainMissing(EngineError):
    """The local engine has no compiler or interpreter for this language."""


class SandboxError(EngineError):
    """The local engine could not set up its sandbox."""


# -- Piston ------------------------------------------------------------------------------------------


class PistonError(CodeCapsuleError):
    """Talking to a Piston server failed."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class TransportError(PistonError):
    """No HTTP answer at all."""


class DNSFailure(TransportError):
    """The host name does not resolve."""


class TLSFailure(TransportError):
    """TLS handshake or certificate verification failed."""


class ConnectFailure(TransportError):
    """The connection was refused, reset or the host unreachable."""


class RequestTimeout(TransportError):
    """No answer within the deadline."""


class HTTPStatusError(PistonError):
    """An HTTP error answer; ``status_code`` and a short ``body`` excerpt are kept."""

    def __init__(self, message: str, *, url: str = "", status_code: int = 0, body: str = "") -> None:
        super().__init__(message, url=url)
        self.status_code = status_code
        self.body = body


class BadRequest(HTTPStatusError):
    """Piston refused the request (400) with a validation message."""


class RuntimeNotInstalled(BadRequest):
    """Piston has no runtime for this language/version."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status_code: int = 400,
        body: str = "",
        language: str = "",
        version: str = "",
        installed: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, url=url, status_code=status_code, body=body)
        self.language = language
        self.version = version
        self.installed = installed


class ClientBug(HTTPStatusError):
    """Piston could not parse what the client sent: a bug in CodeCapsule, please report it."""


class AccessDenied(HTTPStatusError):
    """Cloudflare Access refused the request: the service token is missing or wrong."""


class WrongEndpoint(HTTPStatusError):
    """404 on the API path: the base URL is wrong."""


class PayloadTooLarge(HTTPStatusError):
    """413: the files are too large for the server or the proxy."""


class UnsupportedMediaType(HTTPStatusError):
    """415: the request was not sent as JSON."""


class RateLimited(HTTPStatusError):
    """429: too many requests; ``retry_after`` seconds if the server said."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status_code: int = 429,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, url=url, status_code=status_code, body=body)
        self.retry_after = retry_after


class PackageError(HTTPStatusError):
    """The packages API refused an install/uninstall."""


class OriginDown(HTTPStatusError):
    """502/503: the tunnel answered but Piston (or cloudflared) is down on the VMs."""


class TunnelNotConnected(HTTPStatusError):
    """530 / error 1033: Cloudflare has no connector for the tunnel."""


class OriginTimeout(HTTPStatusError):
    """524: Piston took too long to answer."""


class ProtocolError(PistonError):
    """The server's answer does not have Piston's shape."""


# -- cluster -----------------------------------------------------------------------------------------


class ClusterError(CodeCapsuleError):
    """Deploying or operating the cloud side failed."""


class CloudAPIError(ClusterError):
    """Azure or Cloudflare refused a call."""

    def __init__(self, message: str, *, service: str = "", status_code: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.service = service
        self.status_code = status_code
        self.code = code


class OperationFailed(ClusterError):
    """A long-running cloud operation ended in the Failed state."""


class ConfirmationRequired(ClusterError):
    """A destructive operation was called without the right ``confirm=`` value."""


class OperationInProgress(ClusterError):
    """Another long operation is already running on this cluster or panel."""
