"""A stateful fake of the Cloudflare API v4 for the real ``cloudflare`` SDK (5.9).

It speaks plain HTTP on 127.0.0.1 (a free port, its own thread) with Cloudflare's envelope
``{"success", "errors", "messages", "result"}`` (+ ``result_info`` on paged lists) and keeps state, so a test
can deploy, look, break things and tear down as one story::

    with FakeCloudflare() as fake:
        cf = cloudflare.Cloudflare(api_token=fake.api_token, base_url=fake.endpoint, max_retries=0)

Endpoints (paths below ``/client/v4``) with the operation names that :meth:`FakeCloudflare.fail` and the
request log use::

    GET  /zones  (name, account.id)                                   zones.list
    GET|POST /accounts/{a}/cfd_tunnel  (name, is_deleted, uuid)       tunnels.list | tunnels.create
    GET|DELETE /accounts/{a}/cfd_tunnel/{t}                           tunnels.get | tunnels.delete
    GET|PUT /accounts/{a}/cfd_tunnel/{t}/configurations               configurations.get | .update
    GET  /accounts/{a}/cfd_tunnel/{t}/token                           token.get
    GET|DELETE /accounts/{a}/cfd_tunnel/{t}/connections (client_id)   connections.get | connections.delete
    GET|POST /zones/{z}/dns_records  (name, name.exact, type)         dns.list | dns.create
    GET|PUT|PATCH|DELETE /zones/{z}/dns_records/{r}                   dns.get | .update | .edit | .delete
    GET|POST /accounts/{a}/access/apps  (name, domain, exact)         apps.list | apps.create
    GET|PUT|DELETE /accounts/{a}/access/apps/{id}                     apps.get | apps.update | apps.delete
    GET|POST /accounts/{a}/access/policies  (reusable policies)       policies.list | policies.create
    GET|PUT|DELETE /accounts/{a}/access/policies/{id}                 policies.get | .update | .delete
    GET|POST /accounts/{a}/access/service_tokens  (name, search)      service_tokens.list | .create
    GET|PUT|DELETE /accounts/{a}/access/service_tokens/{id}           service_tokens.get | .update | .delete
    POST /accounts/{a}/access/service_tokens/{id}/rotate              service_tokens.rotate
    POST /accounts/{a}/access/service_tokens/{id}/refresh             service_tokens.refresh

Behaviour copied from the real API: ``Authorization: Bearer <token>`` is required (otherwise 403, code 10000
"Authentication error"); lists honour ``page``/``per_page`` and return an empty page past the end (the SDK
asks for page+1 until it gets one); deleted tunnels are kept (``deleted_at`` set) and listed unless
``is_deleted=false``; a tunnel with live connections cannot be deleted (400, code 1022); the last ingress
rule must be a catch-all; a CNAME cannot share its name with another A/AAAA/CNAME record (400, code 81053);
a service token's ``client_secret`` is returned only by create and rotate; a reusable policy that an
application still uses cannot be deleted.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API_PREFIX = "/client/v4"


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DURATION_UNITS = {"h": 3600, "m": 60, "s": 1}


def _expiry(duration: str) -> str:
    """``expires_at`` for a token valid ``duration`` from now ("8760h", "90m", ...), as Cloudflare computes it."""
    match = re.fullmatch(r"([0-9]+)([hms])", duration)
    if match is None:
        raise CloudflareAPIError(
            400, 12130, f"access.api.error.invalid_request: duration {duration!r} is not a valid duration"
        )
    seconds = int(match[1]) * _DURATION_UNITS[match[2]]
    return _stamp(datetime.now(UTC) + timedelta(seconds=seconds))


def _hex_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake answered (after routing)."""

    method: str
    path: str  # below /client/v4, without the query
    query: dict[str, list[str]]
    operation: str  # e.g. "tunnels.create"; "" when no route matched
    status: int
    body: Any  # the parsed JSON body, or None

    @property
    def is_write(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class _Failure:
    status: int
    code: int
    message: str
    times: int | None  # None: every time
    headers: dict[str, str] = field(default_factory=dict)


class CloudflareAPIError(Exception):
    """Raised inside a handler to answer with Cloudflare's error envelope."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


Handler = Callable[["FakeCloudflare", "_Request"], Any]


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    params: dict[str, str]

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class _Paged:
    """A handler result that should be paged (``result_info``)."""

    def __init__(self, items: list[dict[str, Any]], default_per_page: int = 20) -> None:
        self.items = items
        self.default_per_page = default_per_page


class _Single:
    """A list result that is not paged (``SinglePage`` in the SDK)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items


_ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = []


def _route(method: str, pattern: str, operation: str) -> Callable[[Handler], Handler]:
    regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, regex, operation, fn))
        return fn

    return register


class FakeCloudflare:
    """The fake server plus its state and test controls.

    State is public for assertions (``tunnels``, ``configs``, ``connectors``, ``dns_records``,
    ``access_apps``, ``access_policies``, ``service_tokens``, ``zones``: dicts keyed by id).
    Hold :attr:`lock` when reading them while requests may be in flight.
    """

    def __init__(
        self,
        *,
        api_token: str | None = None,
        account_id: str | None = None,
        zone_name: str = "example.edu",
    ) -> None:
        self.api_token = api_token or "cf-test-token-" + secrets.token_hex(16)
        self.account_id = account_id or _hex_id()
        self.zone_name = zone_name
        self.lock = threading.RLock()
        self.zones: dict[str, dict[str, Any]] = {}
        self.tunnels: dict[str, dict[str, Any]] = {}
        self.tunnel_secrets: dict[str, str] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.connectors: dict[str, list[dict[str, Any]]] = {}
        self.dns_records: dict[str, dict[str, Any]] = {}
        self.access_apps: dict[str, dict[str, Any]] = {}
        self.access_policies: dict[str, dict[str, Any]] = {}
        self.service_tokens: dict[str, dict[str, Any]] = {}
        self.requests: list[LoggedRequest] = []
        self._failures: dict[str, _Failure] = {}
        self.zone_id = self.add_zone(zone_name)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open_connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The SDK's ``base_url``: ``http://127.0.0.1:PORT/client/v4``."""
        if self._server is None:
            raise RuntimeError("the fake Cloudflare server is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def start(self) -> FakeCloudflare:
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-cloudflare", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        # End kept-alive connections an SDK client still holds, so no handler thread outlives the fake.
        with self.lock:
            open_connections = list(self._open_connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeCloudflare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls ----------------------------------------------------------------------------------

    def add_zone(self, name: str, *, account_id: str | None = None) -> str:
        """Add a zone (the constructor adds ``zone_name``); returns its id."""
        zone_id = _hex_id()
        with self.lock:
            self.zones[zone_id] = {
                "id": zone_id,
                "name": name,
                "status": "active",
                "type": "full",
                "paused": False,
                "account": {"id": account_id or self.account_id, "name": "Test account"},
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "created_on": _now(),
                "modified_on": _now(),
            }
        return zone_id

    def remove_zone(self, name: str) -> None:
        with self.lock:
            for zid in [z for z, zone in self.zones.items() if zone["name"] == name]:
                del self.zones[zid]

    def add_dns_record(
        self, name: str, type: str, content: str, *, proxied: bool = False, zone_id: str | None = None
    ) -> dict[str, Any]:
        """Put a record straight into the state (e.g. a CNAME that points elsewhere)."""
        zid = zone_id or self.zone_id
        with self.lock:
            record = self._new_record(zid, {"name": name, "type": type, "content": content, "proxied": proxied})
            self.dns_records[record["id"]] = record
            return copy.deepcopy(record)

    def connect(
        self,
        tunnel_id: str,
        *,
        colo: str = "AMS",
        origin_ip: str = "10.0.1.4",
        connections: int = 4,
        version: str = "2025.8.1",
    ) -> str:
        """Simulate a cloudflared connector joining the tunnel; returns the connector (client) id."""
        with self.lock:
            tunnel = self.tunnels[tunnel_id]
            client_id = str(uuid.uuid4())
            opened = _now()
            conns = [
                {
                    "id": str(uuid.uuid4()),
                    "uuid": str(uuid.uuid4()),
                    "client_id": client_id,
                    "client_version": version,
                    "colo_name": colo,
                    "is_pending_reconnect": False,
                    "opened_at": opened,
                    "origin_ip": origin_ip,
                }
                for _ in range(connections)
            ]
            self.connectors.setdefault(tunnel_id, []).append(
                {
                    "id": client_id,
                    "arch": "linux_amd64",
                    "config_version": self.configs.get(tunnel_id, {}).get("version", 0),
                    "conns": conns,
                    "features": ["ha-origin", "support_datagram_v3_2"],
                    "run_at": opened,
                    "version": version,
                }
            )
            tunnel["conns_active_at"] = tunnel["conns_active_at"] or opened
            tunnel["conns_inactive_at"] = None
            self._refresh_status(tunnel_id)
            return client_id

    def disconnect(self, tunnel_id: str, connector_id: str | None = None) -> None:
        """Simulate connectors going away (all of them when ``connector_id`` is None)."""
        with self.lock:
            self._drop_connectors(tunnel_id, connector_id)

    def set_pending_reconnect(self, tunnel_id: str, connector_id: str, pending: bool = True) -> None:
        with self.lock:
            for client in self.connectors.get(tunnel_id, []):
                if client["id"] == connector_id:
                    for conn in client["conns"]:
                        conn["is_pending_reconnect"] = pending
            self._refresh_status(tunnel_id)

    def fail(
        self,
        operation: str,
        *,
        status: int = 500,
        code: int = 10001,
        message: str = "Internal server error (injected by the fake)",
        times: int | None = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` (e.g. ``"dns.create"``) fail with this error."""
        if operation not in {op for _, _, op, _ in _ROUTES}:
            raise ValueError(f"unknown operation {operation!r}; known: {sorted({r[2] for r in _ROUTES})}")
        with self.lock:
            self._failures[operation] = _Failure(status, code, message, times, dict(headers or {}))

    def clear_failures(self) -> None:
        with self.lock:
            self._failures.clear()

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def operations(self, *, writes_only: bool = False) -> list[str]:
        """The operation names of the logged requests, in order."""
        with self.lock:
            return [r.operation for r in self.requests if r.is_write or not writes_only]

    def live_tunnels(self) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(t) for t in self.tunnels.values() if t["deleted_at"] is None]

    def tunnel_token(self, tunnel_id: str) -> str:
        """The token ``GET .../token`` returns (the same shape as Cloudflare's: base64 JSON a/t/s)."""
        with self.lock:
            payload = {"a": self.account_id, "t": tunnel_id, "s": self.tunnel_secrets[tunnel_id]}
        return base64.b64encode(json.dumps(payload).encode()).decode()

    # -- internals used by the handlers ------------------------------------------------------------

    def _check_account(self, req: _Request) -> None:
        if req.params.get("account_id") != self.account_id:
            raise CloudflareAPIError(
                404,
                7003,
                f"Could not route to /accounts/{req.params.get('account_id')}, perhaps your object "
                "identifier is invalid?",
            )

    def _zone(self, req: _Request) -> dict[str, Any]:
        zone = self.zones.get(req.params.get("zone_id", ""))
        if zone is None:
            raise CloudflareAPIError(
                404,
                7003,
                f"Could not route to /zones/{req.params.get('zone_id')}, perhaps your object identifier is invalid?",
            )
        return zone

    def _tunnel(self, req: _Request) -> dict[str, Any]:
        self._check_account(req)
        tunnel = self.tunnels.get(req.params["tunnel_id"])
        if tunnel is None:
            raise CloudflareAPIError(404, 1002, "Tunnel not found")
        return tunnel

    def _tunnel_view(self, tunnel: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(tunnel)
        view["connections"] = [
            copy.deepcopy(conn) for client in self.connectors.get(tunnel["id"], []) for conn in client["conns"]
        ]
        return view

    def _refresh_status(self, tunnel_id: str) -> None:
        tunnel = self.tunnels[tunnel_id]
        conns = [c for client in self.connectors.get(tunnel_id, []) for c in client["conns"]]
        active = [c for c in conns if not c["is_pending_reconnect"]]
        if active:
            tunnel["status"] = "healthy" if len(active) >= 2 else "degraded"
        elif tunnel["conns_active_at"] is None:
            tunnel["status"] = "inactive"
        else:
            tunnel["status"] = "down"

    def _drop_connectors(self, tunnel_id: str, connector_id: str | None) -> None:
        clients = self.connectors.get(tunnel_id, [])
        self.connectors[tunnel_id] = [c for c in clients if connector_id is not None and c["id"] != connector_id]
        tunnel = self.tunnels[tunnel_id]
        if not self.connectors[tunnel_id] and tunnel["conns_active_at"] is not None:
            tunnel["conns_inactive_at"] = _now()
        self._refresh_status(tunnel_id)

    def _new_record(self, zone_id: str, body: dict[str, Any]) -> dict[str, Any]:
        zone = self.zones[zone_id]
        name = self._fqdn(zone, str(body.get("name") or ""))
        rtype = str(body.get("type") or "")
        if not name or not rtype:
            raise CloudflareAPIError(400, 9000, "DNS record name and type are required.")
        if body.get("content") in (None, ""):
            raise CloudflareAPIError(400, 9005, "Content for the DNS record is required.")
        return {
            "id": _hex_id(),
            "zone_id": zone_id,
            "zone_name": zone["name"],
            "name": name,
            "type": rtype,
            "content": body["content"],
            "proxiable": rtype in {"A", "AAAA", "CNAME"},
            "proxied": bool(body.get("proxied", False)),
            "ttl": body.get("ttl", 1),
            "comment": body.get("comment"),
            "tags": list(body.get("tags") or []),
            "settings": dict(body.get("settings") or {}),
            "meta": {},
            "created_on": _now(),
            "modified_on": _now(),
        }

    @staticmethod
    def _fqdn(zone: dict[str, Any], name: str) -> str:
        name = name.strip().lower().rstrip(".")
        if name in {"", "@"}:
            return zone["name"] if name == "@" else ""
        if name == zone["name"] or name.endswith("." + zone["name"]):
            return name
        return f"{name}.{zone['name']}"

    def _check_cname_conflict(self, record: dict[str, Any], ignore_id: str | None = None) -> None:
        exclusive = {"A", "AAAA", "CNAME"}
        if record["type"] not in exclusive:
            return
        for other in self.dns_records.values():
            if other["id"] == ignore_id or other["zone_id"] != record["zone_id"] or other["name"] != record["name"]:
                continue
            if other["type"] in exclusive and "CNAME" in {other["type"], record["type"]}:
                raise CloudflareAPIError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")

    def _app_view(self, app: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(app)
        expanded = []
        for link in app.get("policies", []):
            policy = self.access_policies.get(link["id"])
            if policy is not None:
                expanded.append({**copy.deepcopy(policy), "precedence": link["precedence"]})
        view["policies"] = expanded
        return view

    def _policy_view(self, policy: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(policy)
        view["app_count"] = sum(
            1 for app in self.access_apps.values() for link in app.get("policies", []) if link["id"] == policy["id"]
        )
        return view

    @staticmethod
    def _token_view(token: dict[str, Any], *, with_secret: bool = False) -> dict[str, Any]:
        view = {k: v for k, v in token.items() if k != "client_secret"}
        if with_secret:
            view["client_secret"] = token["client_secret"]
        return copy.deepcopy(view)

    def _link_policies(self, raw: Any, app_id: str) -> list[dict[str, Any]]:
        """The app's ``policies`` field: ids, ``{"id", "precedence"}`` links or inline (legacy) policies."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: policies must be a list")
        links = []
        for position, item in enumerate(raw, start=1):
            if isinstance(item, str):
                item = {"id": item}
            if not isinstance(item, dict):
                raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: bad policy reference")
            if "id" not in item:  # an inline, app-scoped policy
                policy = self._make_policy(item, reusable=False)
                policy["app_id"] = app_id
                self.access_policies[policy["id"]] = policy
                item = {"id": policy["id"], "precedence": item.get("precedence", position)}
            if item["id"] not in self.access_policies:
                raise CloudflareAPIError(404, 12130, "access.api.error.not_found: policy not found")
            links.append({"id": item["id"], "precedence": int(item.get("precedence") or position)})
        return links

    def _make_policy(self, body: dict[str, Any], *, reusable: bool, policy_id: str | None = None) -> dict[str, Any]:
        if not body.get("name"):
            raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: name is required")
        if body.get("decision") not in {"allow", "deny", "non_identity", "bypass"}:
            raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: invalid decision")
        include = body.get("include")
        if not isinstance(include, list) or not include:
            raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: include must not be empty")
        for rule in [*include, *(body.get("require") or []), *(body.get("exclude") or [])]:
            token_ref = rule.get("service_token") if isinstance(rule, dict) else None
            if token_ref is not None and token_ref.get("token_id") not in self.service_tokens:
                raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: service token not found")
        now = _now()
        return {
            "id": policy_id or str(uuid.uuid4()),
            "name": body["name"],
            "decision": body["decision"],
            "include": copy.deepcopy(include),
            "exclude": copy.deepcopy(body.get("exclude") or []),
            "require": copy.deepcopy(body.get("require") or []),
            "session_duration": body.get("session_duration") or "24h",
            "approval_required": bool(body.get("approval_required", False)),
            "isolation_required": bool(body.get("isolation_required", False)),
            "reusable": reusable,
            "created_at": now,
            "updated_at": now,
        }

    def _make_app(self, body: dict[str, Any], app_id: str, previous: dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("type"):
            raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: type is required")
        domain = str(body.get("domain") or "")
        if body["type"] == "self_hosted":
            host = domain.split("/", 1)[0].lower()
            zones = [z["name"] for z in self.zones.values() if z["account"]["id"] == self.account_id]
            if not host or not any(host == z or host.endswith("." + z) for z in zones):
                raise CloudflareAPIError(
                    400,
                    12130,
                    "access.api.error.invalid_request: domain must belong to a zone in this account",
                )
        now = _now()
        app = {k: copy.deepcopy(v) for k, v in body.items() if k != "policies"}
        app.update(
            {
                "id": app_id,
                "aud": previous["aud"] if previous else secrets.token_hex(32),
                "name": body.get("name") or domain,
                "session_duration": body.get("session_duration") or "24h",
                "created_at": previous["created_at"] if previous else now,
                "updated_at": now,
            }
        )
        app["policies"] = self._link_policies(body.get("policies"), app_id)
        return app


# -- route handlers -----------------------------------------------------------------------------------


def _bool_param(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.lower() in {"true", "1"}


@_route("GET", "/zones", "zones.list")
def _zones_list(fake: FakeCloudflare, req: _Request) -> _Paged:
    zones = list(fake.zones.values())
    if (name := req.q("name")) is not None:
        zones = [z for z in zones if z["name"] == name.lower()]
    if (account := req.q("account.id")) is not None:
        zones = [z for z in zones if z["account"]["id"] == account]
    return _Paged(copy.deepcopy(zones))


@_route("GET", "/accounts/{account_id}/cfd_tunnel", "tunnels.list")
def _tunnels_list(fake: FakeCloudflare, req: _Request) -> _Paged:
    fake._check_account(req)
    tunnels = list(fake.tunnels.values())
    if (name := req.q("name")) is not None:
        tunnels = [t for t in tunnels if t["name"] == name]
    if (uid := req.q("uuid")) is not None:
        tunnels = [t for t in tunnels if t["id"] == uid]
    deleted = _bool_param(req.q("is_deleted"))
    if deleted is not None:
        tunnels = [t for t in tunnels if (t["deleted_at"] is not None) == deleted]
    return _Paged([fake._tunnel_view(t) for t in tunnels])


@_route("POST", "/accounts/{account_id}/cfd_tunnel", "tunnels.create")
def _tunnels_create(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    body = req.body if isinstance(req.body, dict) else {}
    name = body.get("name")
    if not name:
        raise CloudflareAPIError(400, 1001, "Tunnel name is required")
    if any(t["name"] == name and t["deleted_at"] is None for t in fake.tunnels.values()):
        raise CloudflareAPIError(409, 1013, "You already have a tunnel with this name")
    config_src = body.get("config_src", "local")
    tunnel_id = str(uuid.uuid4())
    fake.tunnel_secrets[tunnel_id] = body.get("tunnel_secret") or base64.b64encode(secrets.token_bytes(32)).decode()
    fake.tunnels[tunnel_id] = {
        "id": tunnel_id,
        "account_tag": fake.account_id,
        "name": name,
        "created_at": _now(),
        "deleted_at": None,
        "conns_active_at": None,
        "conns_inactive_at": None,
        "tun_type": "cfd_tunnel",
        "metadata": {},
        "status": "inactive",
        "remote_config": config_src == "cloudflare",
        "config_src": config_src,
    }
    if config_src == "cloudflare":
        fake.configs[tunnel_id] = {
            "tunnel_id": tunnel_id,
            "account_id": fake.account_id,
            "version": 0,
            "config": None,
            "source": "cloudflare",
            "created_at": _now(),
        }
    return fake._tunnel_view(fake.tunnels[tunnel_id])


@_route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}", "tunnels.get")
def _tunnels_get(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    return fake._tunnel_view(fake._tunnel(req))


@_route("DELETE", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}", "tunnels.delete")
def _tunnels_delete(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    tunnel = fake._tunnel(req)
    if tunnel["deleted_at"] is not None:
        raise CloudflareAPIError(404, 1002, "Tunnel not found")
    if any(client["conns"] for client in fake.connectors.get(tunnel["id"], [])):
        raise CloudflareAPIError(
            400,
            1022,
            "Cannot delete tunnel because it has active connections. Clean up the connections first.",
        )
    tunnel["deleted_at"] = _now()
    return fake._tunnel_view(tunnel)


@_route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations", "configurations.get")
def _config_get(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    tunnel = fake._tunnel(req)
    config = fake.configs.get(tunnel["id"])
    if config is None:
        raise CloudflareAPIError(404, 1062, "This tunnel is locally configured; it has no remote configuration")
    return copy.deepcopy(config)


@_route("PUT", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations", "configurations.update")
def _config_put(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    tunnel = fake._tunnel(req)
    if tunnel["deleted_at"] is not None:
        raise CloudflareAPIError(404, 1002, "Tunnel not found")
    body = req.body if isinstance(req.body, dict) else {}
    config = body.get("config")
    ingress = config.get("ingress") if isinstance(config, dict) else None
    if not isinstance(ingress, list) or not ingress:
        raise CloudflareAPIError(400, 1055, "Validation failed: at least one ingress rule is required")
    for rule in ingress:
        if not isinstance(rule, dict) or not rule.get("service"):
            raise CloudflareAPIError(400, 1055, "Validation failed: every ingress rule needs a service")
    last = ingress[-1]
    if last.get("hostname") not in (None, "", "*") or last.get("path"):
        raise CloudflareAPIError(
            400, 1055, "Validation failed: the last ingress rule must match all URLs (no hostname or path)"
        )
    previous = fake.configs.get(tunnel["id"], {})
    fake.configs[tunnel["id"]] = {
        "tunnel_id": tunnel["id"],
        "account_id": fake.account_id,
        "version": int(previous.get("version", 0)) + 1,
        "config": copy.deepcopy(config),
        "source": "cloudflare",
        "created_at": _now(),
    }
    tunnel["remote_config"] = True
    tunnel["config_src"] = "cloudflare"
    return copy.deepcopy(fake.configs[tunnel["id"]])


@_route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token", "token.get")
def _token_get(fake: FakeCloudflare, req: _Request) -> str:
    tunnel = fake._tunnel(req)
    if tunnel["deleted_at"] is not None:
        raise CloudflareAPIError(404, 1002, "Tunnel not found")
    return fake.tunnel_token(tunnel["id"])


@_route("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections", "connections.get")
def _connections_get(fake: FakeCloudflare, req: _Request) -> _Single:
    tunnel = fake._tunnel(req)
    return _Single(copy.deepcopy(fake.connectors.get(tunnel["id"], [])))


@_route("DELETE", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections", "connections.delete")
def _connections_delete(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    tunnel = fake._tunnel(req)
    fake._drop_connectors(tunnel["id"], req.q("client_id"))
    return {}


@_route("GET", "/zones/{zone_id}/dns_records", "dns.list")
def _dns_list(fake: FakeCloudflare, req: _Request) -> _Paged:
    zone = fake._zone(req)
    records = [r for r in fake.dns_records.values() if r["zone_id"] == zone["id"]]
    name = req.q("name.exact") or req.q("name")
    if name is not None:
        records = [r for r in records if r["name"] == fake._fqdn(zone, name)]
    if (rtype := req.q("type")) is not None:
        records = [r for r in records if r["type"] == rtype]
    return _Paged(copy.deepcopy(records), default_per_page=100)


@_route("POST", "/zones/{zone_id}/dns_records", "dns.create")
def _dns_create(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    zone = fake._zone(req)
    record = fake._new_record(zone["id"], req.body if isinstance(req.body, dict) else {})
    fake._check_cname_conflict(record)
    fake.dns_records[record["id"]] = record
    return copy.deepcopy(record)


def _dns_record(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    zone = fake._zone(req)
    record = fake.dns_records.get(req.params["record_id"])
    if record is None or record["zone_id"] != zone["id"]:
        raise CloudflareAPIError(404, 81044, "Record does not exist.")
    return record


@_route("GET", "/zones/{zone_id}/dns_records/{record_id}", "dns.get")
def _dns_get(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    return copy.deepcopy(_dns_record(fake, req))


@_route("PUT", "/zones/{zone_id}/dns_records/{record_id}", "dns.update")
def _dns_update(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    old = _dns_record(fake, req)
    new = fake._new_record(old["zone_id"], req.body if isinstance(req.body, dict) else {})
    new.update({"id": old["id"], "created_on": old["created_on"]})
    fake._check_cname_conflict(new, ignore_id=old["id"])
    fake.dns_records[old["id"]] = new
    return copy.deepcopy(new)


@_route("PATCH", "/zones/{zone_id}/dns_records/{record_id}", "dns.edit")
def _dns_edit(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    old = _dns_record(fake, req)
    merged = {**old, **(req.body if isinstance(req.body, dict) else {})}
    new = fake._new_record(old["zone_id"], merged)
    new.update({"id": old["id"], "created_on": old["created_on"]})
    fake._check_cname_conflict(new, ignore_id=old["id"])
    fake.dns_records[old["id"]] = new
    return copy.deepcopy(new)


@_route("DELETE", "/zones/{zone_id}/dns_records/{record_id}", "dns.delete")
def _dns_delete(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    record = _dns_record(fake, req)
    del fake.dns_records[record["id"]]
    return {"id": record["id"]}


@_route("GET", "/accounts/{account_id}/access/apps", "apps.list")
def _apps_list(fake: FakeCloudflare, req: _Request) -> _Paged:
    fake._check_account(req)
    apps = list(fake.access_apps.values())
    exact = _bool_param(req.q("exact")) or False
    for key in ("name", "domain"):
        wanted = req.q(key)
        if wanted is not None:
            apps = [a for a in apps if (str(a.get(key, "")) == wanted if exact else wanted in str(a.get(key, "")))]
    return _Paged([fake._app_view(a) for a in apps], default_per_page=25)


@_route("POST", "/accounts/{account_id}/access/apps", "apps.create")
def _apps_create(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    app = fake._make_app(req.body, str(uuid.uuid4()), None)
    fake.access_apps[app["id"]] = app
    return fake._app_view(app)


def _app(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    app = fake.access_apps.get(req.params["app_id"])
    if app is None:
        raise CloudflareAPIError(404, 12130, "access.api.error.not_found: application not found")
    return app


@_route("GET", "/accounts/{account_id}/access/apps/{app_id}", "apps.get")
def _apps_get(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    return fake._app_view(_app(fake, req))


@_route("PUT", "/accounts/{account_id}/access/apps/{app_id}", "apps.update")
def _apps_update(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    old = _app(fake, req)
    app = fake._make_app(req.body, old["id"], old)
    fake.access_apps[app["id"]] = app
    return fake._app_view(app)


@_route("DELETE", "/accounts/{account_id}/access/apps/{app_id}", "apps.delete")
def _apps_delete(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    app = _app(fake, req)
    del fake.access_apps[app["id"]]
    for pid in [p for p, pol in fake.access_policies.items() if pol.get("app_id") == app["id"]]:
        del fake.access_policies[pid]  # app-scoped (inline) policies go with their app
    return {"id": app["id"]}


@_route("GET", "/accounts/{account_id}/access/policies", "policies.list")
def _policies_list(fake: FakeCloudflare, req: _Request) -> _Paged:
    fake._check_account(req)
    return _Paged([fake._policy_view(p) for p in fake.access_policies.values() if p["reusable"]], 25)


@_route("POST", "/accounts/{account_id}/access/policies", "policies.create")
def _policies_create(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    policy = fake._make_policy(req.body if isinstance(req.body, dict) else {}, reusable=True)
    fake.access_policies[policy["id"]] = policy
    return fake._policy_view(policy)


def _policy(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    policy = fake.access_policies.get(req.params["policy_id"])
    if policy is None or not policy["reusable"]:
        raise CloudflareAPIError(404, 12130, "access.api.error.not_found: policy not found")
    return policy


@_route("GET", "/accounts/{account_id}/access/policies/{policy_id}", "policies.get")
def _policies_get(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    return fake._policy_view(_policy(fake, req))


@_route("PUT", "/accounts/{account_id}/access/policies/{policy_id}", "policies.update")
def _policies_update(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    old = _policy(fake, req)
    new = fake._make_policy(req.body if isinstance(req.body, dict) else {}, reusable=True, policy_id=old["id"])
    new["created_at"] = old["created_at"]
    fake.access_policies[old["id"]] = new
    return fake._policy_view(new)


@_route("DELETE", "/accounts/{account_id}/access/policies/{policy_id}", "policies.delete")
def _policies_delete(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    policy = _policy(fake, req)
    if fake._policy_view(policy)["app_count"]:
        raise CloudflareAPIError(
            400,
            12130,
            "access.api.error.conflict: this policy is used by an application; remove it from the application first",
        )
    del fake.access_policies[policy["id"]]
    return {"id": policy["id"]}


@_route("GET", "/accounts/{account_id}/access/service_tokens", "service_tokens.list")
def _tokens_list(fake: FakeCloudflare, req: _Request) -> _Paged:
    fake._check_account(req)
    tokens = list(fake.service_tokens.values())
    if (name := req.q("name")) is not None:
        tokens = [t for t in tokens if t["name"] == name]
    if (search := req.q("search")) is not None:
        tokens = [t for t in tokens if search in t["name"]]
    return _Paged([fake._token_view(t) for t in tokens], 25)


@_route("POST", "/accounts/{account_id}/access/service_tokens", "service_tokens.create")
def _tokens_create(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    body = req.body if isinstance(req.body, dict) else {}
    if not body.get("name"):
        raise CloudflareAPIError(400, 12130, "access.api.error.invalid_request: name is required")
    now = _now()
    token = {
        "id": str(uuid.uuid4()),
        "name": body["name"],
        "client_id": f"{secrets.token_hex(16)}.access",
        "client_secret": secrets.token_hex(32),
        "duration": body.get("duration") or "8760h",
        "enabled": body.get("enabled", True),
        "expires_at": _expiry(body.get("duration") or "8760h"),
        "created_at": now,
        "updated_at": now,
        "last_seen_at": None,
    }
    fake.service_tokens[token["id"]] = token
    return fake._token_view(token, with_secret=True)


def _service_token(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    fake._check_account(req)
    token = fake.service_tokens.get(req.params["token_id"])
    if token is None:
        raise CloudflareAPIError(404, 12130, "access.api.error.not_found: service token not found")
    return token


@_route("GET", "/accounts/{account_id}/access/service_tokens/{token_id}", "service_tokens.get")
def _tokens_get(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    return fake._token_view(_service_token(fake, req))


@_route("PUT", "/accounts/{account_id}/access/service_tokens/{token_id}", "service_tokens.update")
def _tokens_update(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    token = _service_token(fake, req)
    body = req.body if isinstance(req.body, dict) else {}
    if "duration" in body:
        _expiry(str(body["duration"]))  # validated; the expiry itself moves only on refresh
    for key in ("name", "duration", "enabled"):
        if key in body:
            token[key] = body[key]
    token["updated_at"] = _now()
    return fake._token_view(token)


@_route("POST", "/accounts/{account_id}/access/service_tokens/{token_id}/refresh", "service_tokens.refresh")
def _tokens_refresh(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    """Cloudflare's refresh: the expiry moves to now + duration; the secret stays (and is not returned)."""
    token = _service_token(fake, req)
    token["expires_at"] = _expiry(token["duration"])
    token["updated_at"] = _now()
    return fake._token_view(token)


@_route("POST", "/accounts/{account_id}/access/service_tokens/{token_id}/rotate", "service_tokens.rotate")
def _tokens_rotate(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    token = _service_token(fake, req)
    token["client_secret"] = secrets.token_hex(32)  # a new secret, but the old expiry: rotation does not extend it
    token["updated_at"] = _now()
    return fake._token_view(token, with_secret=True)


@_route("DELETE", "/accounts/{account_id}/access/service_tokens/{token_id}", "service_tokens.delete")
def _tokens_delete(fake: FakeCloudflare, req: _Request) -> dict[str, Any]:
    token = _service_token(fake, req)
    del fake.service_tokens[token["id"]]
    return fake._token_view(token)


# -- HTTP plumbing ------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Don't wait for keep-alive connections an SDK client may still hold open when the test ends.
    block_on_close = False


def _make_handler(fake: FakeCloudflare) -> type[BaseHTTPRequestHandler]:
    class CloudflareHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = 30  # an idle keep-alive connection ends after this many seconds

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is the record
            pass

        def setup(self) -> None:
            super().setup()
            with fake.lock:
                fake._open_connections.add(self.connection)

        def finish(self) -> None:
            with fake.lock:
                fake._open_connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._send(400, _envelope_error(6007, "Malformed JSON in request body"))
                return
            path = url.path
            if not path.startswith(API_PREFIX):
                self._send(404, _envelope_error(7000, "No route for that URI"))
                return
            path = path[len(API_PREFIX) :] or "/"
            status, payload, operation, headers = self._dispatch(path, query, body)
            with fake.lock:
                fake.requests.append(LoggedRequest(self.command, path, query, operation, status, body))
            self._send(status, payload, headers)

        def _dispatch(
            self, path: str, query: dict[str, list[str]], body: Any
        ) -> tuple[int, dict[str, Any], str, dict[str, str]]:
            match = None
            route = None
            for method, regex, operation, fn in _ROUTES:
                match = regex.match(path)
                if match and method == self.command:
                    route = (operation, fn)
                    break
            if route is None:
                return 404, _envelope_error(7000, "No route for that URI"), "", {}
            operation, handler = route
            if self.headers.get("Authorization") != f"Bearer {fake.api_token}":
                return 403, _envelope_error(10000, "Authentication error"), operation, {}
            assert match is not None
            with fake.lock:
                failure = fake._failures.get(operation)
                if failure is not None:
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            del fake._failures[operation]
                    return (
                        failure.status,
                        _envelope_error(failure.code, failure.message),
                        operation,
                        failure.headers,
                    )
                request = _Request(self.command, path, query, body, match.groupdict())
                try:
                    result = handler(fake, request)
                except CloudflareAPIError as err:
                    return err.status, _envelope_error(err.code, err.message), operation, {}
            return 200, _envelope_ok(result, query), operation, {}

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return CloudflareHandler


def _envelope_error(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}


def _envelope_ok(result: Any, query: dict[str, list[str]]) -> dict[str, Any]:
    if isinstance(result, _Single):
        return {"success": True, "errors": [], "messages": [], "result": result.items}
    if isinstance(result, _Paged):
        page = max(1, int(float((query.get("page") or ["1"])[-1])))
        per_page = max(1, min(1000, int(float((query.get("per_page") or [str(result.default_per_page)])[-1]))))
        total = len(result.items)
        items = result.items[(page - 1) * per_page : page * per_page]
        return {
            "success": True,
            "errors": [],
            "messages": [],
            "result": items,
            "result_info": {
                "page": page,
                "per_page": per_page,
                "count": len(items),
                "total_count": total,
                "total_pages": max(1, -(-total // per_page)),
            },
        }
    return {"success": True, "errors": [], "messages": [], "result": result}


@pytest.fixture
def fake_cloudflare() -> Iterator[FakeCloudflare]:
    """A running :class:`FakeCloudflare` with one zone (``example.edu``); stopped after the test."""
    with FakeCloudflare() as fake:
        yield fake
