"""A stateful fake Azure Resource Manager that the real, unmodified azure-mgmt-* clients talk to.

It serves HTTPS on 127.0.0.1 (certificate minted at start, see :mod:`tests.fakes.tls`) and implements the
parts of ARM that CodeCapsule uses, with ARM's wire behaviour:

* resource groups: PUT / GET / HEAD (check_existence) / DELETE (202 + ``Location`` polled until done; deleting
  the group deletes everything inside it);
* Microsoft.Network NSGs, public IPs, NAT gateways, virtual networks (+ subnets) and Microsoft.Compute VM
  scale sets: PUT / PATCH / DELETE are long-running operations (200/201 + ``properties.provisioningState`` +
  an absolute ``Azure-AsyncOperation`` URL answering ``InProgress`` then ``Succeeded``/``Failed``); GET
  returns what was PUT (or merged by PATCH); a scale set's ``sku.capacity`` drives its instance list;
* scale-set VMs: list (``$expand=instanceView``), get, instance view, ``runCommand`` (202; a second run
  command on a busy VM → 409 Conflict), scale-set ``instanceView``, ``reimageall`` / ``reimage`` /
  ``manualupgrade`` (202);
* microsoft.insights autoscale settings (PUT / GET / DELETE, not long-running); an *enabled* setting pulls the
  capacity of its target back inside min..max, as the real autoscale engine does;
* errors ``{"error": {"code", "message"}}``; 404 ``ResourceNotFound`` / ``ResourceGroupNotFound``; paths
  matched case-insensitively; ``api-version`` required (any value); a bearer token required (401 otherwise).

Test controls: :attr:`FakeARM.resources` (stored JSON keyed by lower-cased id), :attr:`FakeARM.requests` (the
request log), :meth:`FakeARM.fail_next` (inject an HTTP error or an LRO that ends ``Failed``),
:attr:`FakeARM.run_command_responder`, :attr:`FakeARM.lro_polls`, :meth:`FakeARM.wait_for_request`,
:meth:`FakeARM.set_instance_state`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .tls import make_test_certificate

__all__ = [
    "DEFAULT_SUBSCRIPTION",
    "FakeARM",
    "FakeCredential",
    "InjectedFailure",
    "LoggedRequest",
    "fake_arm",
]

DEFAULT_SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"

# Resource types (lower-cased "namespace/type") whose writes are long-running operations.
_LRO_TYPES = {
    "microsoft.network/networksecuritygroups",
    "microsoft.network/publicipaddresses",
    "microsoft.network/natgateways",
    "microsoft.network/virtualnetworks",
    "microsoft.compute/virtualmachinescalesets",
}
_PLAIN_TYPES = {"microsoft.insights/autoscalesettings"}
_VMSS = "microsoft.compute/virtualmachinescalesets"

RunCommandResponder = Callable[[str, list[str]], "str | tuple[str, str]"]


class ArmError(Exception):
    """Raised inside the fake to answer with an ARM error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake received (``path`` as sent, without the query)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any

    def matches(self, method: str | None = None, contains: str | None = None) -> bool:
        return (method is None or self.method == method.upper()) and (
            contains is None or contains.lower() in self.path.lower()
        )


@dataclass
class InjectedFailure:
    """A failure waiting for a request with ``method`` whose lower-cased path contains ``contains``.

    ``status=None`` lets the request be accepted and makes its long-running operation end ``Failed`` with
    ``code``/``message``; a number answers the request itself with that HTTP status and error body.
    """

    method: str
    contains: str
    code: str
    message: str
    status: int | None = None
    times: int = 1


@dataclass
class _Operation:
    id: str
    polls_left: int
    complete: Callable[[], tuple[str, dict[str, Any] | None, Any]]  # -> (status, error, result body)
    status: str = "InProgress"
    error: dict[str, Any] | None = None
    result: Any = None
    completing: bool = False
    started: str = field(default_factory=lambda: _now())


class FakeCredential:
    """A ``TokenCredential``: ``get_token(*scopes, **kw) -> AccessToken`` with a fixed token."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.scopes_seen: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes_seen.append(scopes)
        return AccessToken(self._token, int(time.time()) + 3600)

    def __repr__(self) -> str:  # never show the token
        return "FakeCredential(<token hidden>)"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())


def _deep_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """ARM's PATCH: objects merge recursively, lists and scalars replace, ``tags`` replace wholesale."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and key != "tags":
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _check_ssh_keys(props: dict[str, Any]) -> None:
    """Azure accepts only RSA keys of at least 2048 bits for Linux VMs (ED25519/ECDSA: InvalidParameter)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    linux = props.get("virtualMachineProfile", {}).get("osProfile", {}).get("linuxConfiguration") or {}
    for key in (linux.get("ssh") or {}).get("publicKeys") or []:
        data = str(key.get("keyData", ""))
        try:
            parsed: Any = load_ssh_public_key(data.encode("ascii")) if data.startswith("ssh-rsa ") else None
        except Exception:
            parsed = None
        if not isinstance(parsed, rsa.RSAPublicKey) or parsed.key_size < 2048:
            raise ArmError(
                400,
                "InvalidParameter",
                "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid. Only ssh-rsa "
                "keys of at least 2048 bits are supported.",
            )


#: Windows time-zone names the fake understands (Azure autoscale takes Windows names only), as IANA zones.
WINDOWS_TO_IANA = {
    "UTC": "UTC",
    "W. Europe Standard Time": "Europe/Amsterdam",
    "GMT Standard Time": "Europe/London",
    "Romance Standard Time": "Europe/Paris",
    "Eastern Standard Time": "America/New_York",
    "Pacific Standard Time": "America/Los_Angeles",
    "Tokyo Standard Time": "Asia/Tokyo",
}


def _check_profiles(props: dict[str, Any]) -> None:
    """What Azure validates in an autoscale setting: ≤ 20 profiles, sane capacities, Windows time zones."""
    profiles = props.get("profiles") or []
    if not 1 <= len(profiles) <= 20:
        raise ArmError(400, "InvalidRequest", "An autoscale setting must have between 1 and 20 profiles.")
    for profile in profiles:
        cap = profile.get("capacity") or {}
        try:
            lo, hi, default = int(cap["minimum"]), int(cap["maximum"]), int(cap["default"])
        except (KeyError, TypeError, ValueError):
            raise ArmError(400, "InvalidRequest", f"Profile {profile.get('name')!r} has no valid capacity.") from None
        if not 0 <= lo <= hi <= 1000 or not lo <= default <= hi:
            raise ArmError(
                400, "InvalidRequest", f"Profile {profile.get('name')!r}: capacity must satisfy min ≤ default ≤ max."
            )
        zone = ((profile.get("recurrence") or {}).get("schedule") or {}).get("timeZone") or (
            profile.get("fixedDate") or {}
        ).get("timeZone")
        if zone is not None and zone not in WINDOWS_TO_IANA:
            raise ArmError(400, "InvalidRequest", f"The time zone '{zone}' is not a supported time zone name.")


def active_profile(profiles: list[dict[str, Any]], now: Any) -> dict[str, Any] | None:
    """The profile Azure's autoscale engine would apply at ``now`` (an aware datetime): an active fixed-date
    profile wins; else the recurring one that started last (a recurring profile has no end); else the
    profile without recurrence."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    names = [d for d in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")]
    for profile in profiles:
        fixed = profile.get("fixedDate")
        if fixed:
            tz = ZoneInfo(WINDOWS_TO_IANA.get(fixed.get("timeZone") or "UTC", "UTC"))
            start = datetime.fromisoformat(str(fixed["start"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(fixed["end"]).replace("Z", "+00:00"))
            start, end = (t if t.tzinfo else t.replace(tzinfo=tz) for t in (start, end))
            if start <= now < end:
                return profile
    latest: tuple[Any, dict[str, Any]] | None = None
    for profile in profiles:
        schedule = (profile.get("recurrence") or {}).get("schedule")
        if not schedule:
            continue
        local = now.astimezone(ZoneInfo(WINDOWS_TO_IANA[schedule["timeZone"]]))
        for day in schedule.get("days", []):
            back = (local.weekday() - names.index(day)) % 7
            start = (local - timedelta(days=back)).replace(
                hour=int(schedule["hours"][0]), minute=int(schedule["minutes"][0]), second=0, microsecond=0
            )
            if start > local:
                start -= timedelta(days=7)
            if latest is None or start > latest[0]:
                latest = (start, profile)
    if latest is not None:
        return latest[1]
    return next((p for p in profiles if not p.get("recurrence") and not p.get("fixedDate")), None)


def _power_code(state: str) -> dict[str, str]:
    return {"code": f"PowerState/{state}", "level": "Info", "displayStatus": f"VM {state}"}


def _prov_code(state: str) -> dict[str, str]:
    return {
        "code": f"ProvisioningState/{state.lower()}",
        "level": "Error" if state == "Failed" else "Info",
        "displayStatus": f"Provisioning {state.lower()}",
    }


class FakeARM:
    """The fake server and its state. Use as a context manager (or the ``fake_arm`` fixture)."""

    def __init__(self, *, subscription_id: str = DEFAULT_SUBSCRIPTION, lro_polls: int = 1) -> None:
        self.subscription_id = subscription_id
        self.token = "fake-arm-token-" + uuid.uuid4().hex
        self.credential = FakeCredential(self.token)
        #: stored resources, keyed by lower-cased id; values are the JSON GET returns
        self.resources: dict[str, dict[str, Any]] = {}
        #: every request received, in order
        self.requests: list[LoggedRequest] = []
        #: how many times an operation answers InProgress before its terminal status
        self.lro_polls = lro_polls
        #: (instance_id, script lines) -> stdout, or (stdout, stderr); may block (runs outside the state lock)
        self.run_command_responder: RunCommandResponder = lambda instance_id, script: ""
        #: if True, enabled autoscale settings pull a scale set's capacity back into min..max
        self.autoscale_enforced = True
        #: the autoscale engine's clock (tests set it to a lab hour or a night)
        self.clock: Callable[[], Any] | None = None
        self.failures: list[InjectedFailure] = []
        self._operations: dict[str, _Operation] = {}
        self._busy_vms: set[str] = set()
        self._next_instance: dict[str, itertools.count[int]] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self.ca_bundle = ""

    # -- lifecycle -------------------------------------------------------------------------------------------

    def now(self) -> Any:
        from datetime import UTC, datetime

        return self.clock() if self.clock is not None else datetime.now(UTC)

    def start(self) -> FakeARM:
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-arm-")
        cert = make_test_certificate(self._tmp.name)
        self.ca_bundle = str(cert.ca_bundle)
        self._server = _Server(("127.0.0.1", 0), _Handler, cert.server_context(), self)
        port = self._server.server_address[1]
        self.endpoint = f"https://127.0.0.1:{port}"
        # a short poll interval makes stop() quick (serve_forever checks for shutdown at this pace)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="fake-arm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # stops serve_forever
            self._server.close_connections()  # ends keep-alive handler threads
            self._server.server_close()  # joins the handler threads
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeARM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        contains: str,
        *,
        code: str = "InternalServerError",
        message: str = "Injected failure.",
        status: int | None = None,
        times: int = 1,
    ) -> InjectedFailure:
        """Make the next ``times`` matching requests fail (see :class:`InjectedFailure`)."""
        failure = InjectedFailure(method.upper(), contains.lower(), code, message, status, times)
        with self._lock:
            self.failures.append(failure)
        return failure

    def requests_matching(self, method: str | None = None, contains: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.matches(method, contains)]

    def wait_for_request(
        self, method: str | None = None, contains: str | None = None, *, count: int = 1, timeout: float = 10.0
    ) -> LoggedRequest:
        """Block until ``count`` matching requests have arrived (waits on a condition, no polling)."""
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self.requests_matching(method, contains)) >= count, timeout)
            if not ok:
                raise TimeoutError(f"no {method or ''} request containing {contains!r} within {timeout}s")
            return self.requests_matching(method, contains)[count - 1]

    def get(self, resource_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.resources.get(resource_id.lower().rstrip("/"))
            return copy.deepcopy(found) if found is not None else None

    def find(self, type_suffix: str, name: str | None = None) -> list[dict[str, Any]]:
        """Stored resources whose type ends with ``type_suffix`` (case-insensitive), optionally by name."""
        with self._lock:
            return [
                copy.deepcopy(r)
                for r in self.resources.values()
                if r.get("type", "").lower().endswith(type_suffix.lower())
                and (name is None or r.get("name", "").lower() == name.lower())
            ]

    def instances(self, vmss_name: str) -> list[dict[str, Any]]:
        """The stored VM instances of a scale set, ordered by instance id."""
        vms = [
            v
            for v in self.find("virtualmachinescalesets/virtualmachines")
            if v["id"].lower().split("/virtualmachines/")[0].endswith("/" + vmss_name.lower())
        ]
        return sorted(vms, key=lambda v: int(v["instanceId"]))

    def set_instance_state(
        self,
        vmss_name: str,
        instance_id: str,
        *,
        provisioning_state: str | None = None,
        power_state: str | None = None,
        latest_model: bool | None = None,
    ) -> None:
        with self._lock:
            for key, vm in self.resources.items():
                if vm.get("instanceId") == instance_id and f"/{vmss_name.lower()}/virtualmachines/" in key:
                    self._set_vm(vm, provisioning_state, power_state, latest_model)
                    return
        raise KeyError(f"{vmss_name}/{instance_id}")

    # -- request handling (called from handler threads) ------------------------------------------------------

    def _log(self, req: LoggedRequest) -> None:
        with self._changed:
            self.requests.append(req)
            self._changed.notify_all()

    def _take_failure(self, method: str, path: str) -> InjectedFailure | None:
        with self._lock:
            for f in self.failures:
                if f.method == method and f.contains in path.lower() and f.times > 0:
                    f.times -= 1
                    if f.times == 0:
                        self.failures.remove(f)
                    return f
        return None

    def handle(
        self, method: str, raw_path: str, query: dict[str, str], body: Any, host: str
    ) -> tuple[int, dict[str, str], Any]:
        path = raw_path.rstrip("/")
        low = path.lower()
        parts = low.split("/")
        orig = path.split("/")
        if "api-version" not in {k.lower() for k in query}:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        failure = self._take_failure(method, low)
        if failure is not None and failure.status is not None:
            raise ArmError(failure.status, failure.code, failure.message)
        lro_failure = failure
        base = f"https://{host}"

        if len(parts) < 3 or parts[1] != "subscriptions":
            raise ArmError(404, "NotFound", f"No route for {method} {path}.")
        # operation status / result endpoints
        if len(parts) == 9 and parts[3] == "providers" and parts[5] == "locations":
            if parts[7] == "operations":
                return self._operation_status(parts[8])
            if parts[7] == "operationresults":
                return self._operation_result(parts[8], base + path, query)
        if len(parts) == 5 and parts[3] == "operationresults":
            return self._operation_result(parts[4], base + path, query)
        if len(parts) < 5 or parts[3] != "resourcegroups":
            raise ArmError(404, "NotFound", f"No route for {method} {path}.")

        with self._lock:
            rg_key = "/".join(parts[:5])
            if len(parts) == 5:
                return self._resource_group(method, "/".join(orig[:5]), body, base, lro_failure)
            rg = self.resources.get(rg_key)
            if rg is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{orig[4]}' could not be found.")
            if len(parts) == 6 and parts[5] == "resources" and method == "GET":
                inside = [
                    copy.deepcopy(r)
                    for k, r in self.resources.items()
                    if k.startswith(rg_key + "/") and "/virtualmachines/" not in k
                ]
                return 200, {}, {"value": inside}
            if len(parts) < 9 or parts[5] != "providers":
                raise ArmError(404, "NotFound", f"No route for {method} {path}.")
            rtype = f"{parts[6]}/{parts[7]}"
            res_id = "/".join(orig[:9])
            if len(parts) == 9:
                return self._top_level(method, rtype, res_id, body, base, lro_failure)
            if rtype == _VMSS:
                expand = any(k.lower() == "$expand" and "instanceview" in v.lower() for k, v in query.items())
                return self._vmss_sub(method, res_id, parts[9:], orig[9:], body, base, lro_failure, expand)
            if rtype == "microsoft.network/virtualnetworks" and len(parts) == 11 and parts[9] == "subnets":
                vnet = self._require(res_id)
                for subnet in vnet.get("properties", {}).get("subnets", []):
                    if subnet["name"].lower() == parts[10] and method == "GET":
                        return 200, {}, copy.deepcopy(subnet)
                raise ArmError(404, "NotFound", f"Subnet '{orig[10]}' was not found in '{orig[8]}'.")
        raise ArmError(404, "NotFound", f"No route for {method} {path}.")

    # -- resource groups -------------------------------------------------------------------------------------

    def _resource_group(
        self, method: str, rg_id: str, body: Any, base: str, failure: InjectedFailure | None
    ) -> tuple[int, dict[str, str], Any]:
        key = rg_id.lower()
        existing = self.resources.get(key)
        name = rg_id.split("/")[4]
        if method in ("GET", "HEAD"):
            if existing is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            return (
                (204 if method == "HEAD" else 200),
                {},
                (None if method == "HEAD" else copy.deepcopy(existing)),
            )
        if method in ("PUT", "PATCH"):
            if existing is not None and existing["properties"]["provisioningState"] == "Deleting":
                raise ArmError(
                    409,
                    "ResourceGroupBeingDeleted",
                    f"The resource group '{name}' is in deprovisioning state and cannot perform this operation.",
                )
            if method == "PATCH" and existing is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            if not isinstance(body, dict) or (method == "PUT" and not body.get("location")):
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            rg = existing or {
                "id": rg_id,
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "properties": {"provisioningState": "Succeeded"},
            }
            rg["location"] = body.get("location", rg.get("location"))
            if "tags" in body or method == "PUT":
                rg["tags"] = dict(body.get("tags") or {})
            self.resources[key] = rg
            return (200 if existing else 201), {}, copy.deepcopy(rg)
        if method == "DELETE":
            if existing is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
            existing["properties"]["provisioningState"] = "Deleting"

            def complete() -> tuple[str, dict[str, Any] | None, Any]:
                with self._lock:
                    if failure is not None:
                        existing["properties"]["provisioningState"] = "Succeeded"
                        return "Failed", {"code": failure.code, "message": failure.message}, None
                    for k in [k for k in self.resources if k == key or k.startswith(key + "/")]:
                        del self.resources[k]
                    self._busy_vms = {v for v in self._busy_vms if not v.startswith(key + "/")}
                return "Succeeded", None, None

            op = self._new_operation(complete)
            sub = rg_id.split("/")[2]
            location = f"{base}/subscriptions/{sub}/operationresults/{op.id}?api-version=2025-04-01"
            return 202, {"Location": location, "Retry-After": "0"}, None
        raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on resource groups.")

    # -- top-level resources ---------------------------------------------------------------------------------

    def _require(self, res_id: str) -> dict[str, Any]:
        found = self.resources.get(res_id.lower())
        if found is None:
            rtype = "/".join(res_id.split("/")[6:8])
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{rtype}/{res_id.split('/')[8]}' under resource group "
                f"'{res_id.split('/')[4]}' was not found.",
            )
        return found

    def _async_headers(self, base: str, res_id: str, op: _Operation, *, location: bool = False) -> dict[str, str]:
        parts = res_id.split("/")
        sub, ns = parts[2], parts[6]
        loc = self.resources.get(res_id.lower(), {}).get("location", "westeurope")
        prefix = f"{base}/subscriptions/{sub}/providers/{ns}/locations/{loc}"
        headers = {
            "Azure-AsyncOperation": f"{prefix}/operations/{op.id}?api-version=2026-04-01",
            "Retry-After": "0",
        }
        if location:
            headers["Location"] = f"{prefix}/operationresults/{op.id}?api-version=2026-04-01"
        return headers

    def _top_level(
        self, method: str, rtype: str, res_id: str, body: Any, base: str, failure: InjectedFailure | None
    ) -> tuple[int, dict[str, str], Any]:
        key = res_id.lower()
        if rtype not in _LRO_TYPES | _PLAIN_TYPES:
            raise ArmError(400, "NoRegisteredProviderFound", f"No registered resource provider found for '{rtype}'.")
        existing = self.resources.get(key)
        if method == "GET":
            return 200, {}, self._public(self._require(res_id))
        if method == "DELETE":
            if existing is None:
                return 204, {}, None
            if rtype in _PLAIN_TYPES:
                del self.resources[key]
                return 200, {}, None
            existing.setdefault("properties", {})["provisioningState"] = "Deleting"

            def complete_delete() -> tuple[str, dict[str, Any] | None, Any]:
                with self._lock:
                    for k in [k for k in self.resources if k == key or k.startswith(key + "/")]:
                        del self.resources[k]
                return "Succeeded", None, None

            op = self._new_operation(complete_delete)
            return 202, self._async_headers(base, res_id, op, location=True), None
        if method not in ("PUT", "PATCH"):
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported here.")
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be parsed.")
        if method == "PATCH":
            if existing is None:
                self._require(res_id)
            resource = copy.deepcopy(existing)
            assert resource is not None
            _deep_merge(resource, body)
        else:
            if not body.get("location"):
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            resource = copy.deepcopy(body)
            if (
                existing is not None
                and "location" in existing
                and existing["location"].lower() != str(body["location"]).lower()
            ):
                raise ArmError(
                    409,
                    "InvalidResourceLocation",
                    f"The resource '{res_id.split('/')[8]}' already exists in location "
                    f"'{existing['location']}'. A resource with the same name cannot be created in "
                    f"location '{body['location']}'.",
                )
        parts = res_id.split("/")
        resource.update({"id": res_id, "name": parts[8], "type": f"{parts[6]}/{parts[7]}"})
        resource.setdefault("tags", {})
        props = resource.setdefault("properties", {})
        self._enrich(rtype, resource, existing)
        if rtype in _PLAIN_TYPES:
            props.pop("provisioningState", None)
            self.resources[key] = resource
            self._enforce_autoscale_for(resource)
            return (200 if existing else 201), {}, self._public(resource)

        props["provisioningState"] = "Creating" if existing is None else "Updating"
        self.resources[key] = resource
        if rtype == _VMSS:
            self._reconcile_instances(resource, existing)

        def complete() -> tuple[str, dict[str, Any] | None, Any]:
            with self._lock:
                current = self.resources.get(key)
                if current is None:
                    return "Succeeded", None, None
                state = "Failed" if failure is not None else "Succeeded"
                current["properties"]["provisioningState"] = state
                if rtype == _VMSS:
                    for vm in self._vms_of(key):
                        if vm["properties"]["provisioningState"] in ("Creating", "Updating"):
                            self._set_vm(vm, state, "running" if state == "Succeeded" else "stopped", None)
                    if state == "Succeeded":
                        self._enforce_autoscale_on(key)
            if failure is not None:
                return "Failed", {"code": failure.code, "message": failure.message}, None
            return "Succeeded", None, None

        op = self._new_operation(complete)
        return (200 if existing else 201), self._async_headers(base, res_id, op), self._public(resource)

    def _public(self, resource: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(resource)

    def _enrich(self, rtype: str, resource: dict[str, Any], existing: dict[str, Any] | None) -> None:
        """Fill in what ARM adds itself: child ids, etags, back-references, read-only properties."""
        res_id = resource["id"]
        props = resource["properties"]
        resource["etag"] = f'W/"{uuid.uuid4()}"'
        if rtype == "microsoft.network/networksecuritygroups":
            for rule in props.get("securityRules", []):
                rule["id"] = f"{res_id}/securityRules/{rule.get('name', '')}"
                rule.setdefault("type", "Microsoft.Network/networkSecurityGroups/securityRules")
                rule.setdefault("properties", {})["provisioningState"] = "Succeeded"
            props["defaultSecurityRules"] = [
                {
                    "id": f"{res_id}/defaultSecurityRules/{n}",
                    "name": n,
                    "properties": {
                        "priority": p,
                        "direction": d,
                        "access": a,
                        "protocol": "*",
                        "sourceAddressPrefix": s,
                        "destinationAddressPrefix": "*",
                        "sourcePortRange": "*",
                        "destinationPortRange": "*",
                    },
                }
                for n, p, d, a, s in [
                    ("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork"),
                    ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer"),
                    ("DenyAllInBound", 65500, "Inbound", "Deny", "*"),
                    ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork"),
                    ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*"),
                    ("DenyAllOutBound", 65500, "Outbound", "Deny", "*"),
                ]
            ]
        if rtype == "microsoft.network/publicipaddresses":
            props["ipAddress"] = (existing or {}).get("properties", {}).get(
                "ipAddress"
            ) or f"20.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
        backref_types = ("microsoft.network/networksecuritygroups", "microsoft.network/natgateways")
        if rtype in backref_types and existing and "subnets" in existing.get("properties", {}):
            # back-references are maintained by ARM, not sent by clients
            props["subnets"] = existing["properties"]["subnets"]
        if rtype == "microsoft.network/virtualnetworks":
            for subnet in props.get("subnets", []):
                subnet["id"] = f"{res_id}/subnets/{subnet.get('name', '')}"
                subnet.setdefault("type", "Microsoft.Network/virtualNetworks/subnets")
                sp = subnet.setdefault("properties", {})
                sp["provisioningState"] = "Succeeded"
                for ref_key in ("networkSecurityGroup", "natGateway"):
                    ref = sp.get(ref_key)
                    target = self.resources.get(str((ref or {}).get("id", "")).lower())
                    if ref and target is None:
                        raise ArmError(
                            400,
                            "InvalidResourceReference",
                            f"Resource {ref.get('id')} referenced by resource {subnet['id']} was not "
                            "found. Please make sure that the referenced resource exists, and that both "
                            "resources are in the same region.",
                        )
                    if target is not None:
                        backrefs = target.setdefault("properties", {}).setdefault("subnets", [])
                        if all(b["id"].lower() != subnet["id"].lower() for b in backrefs):
                            backrefs.append({"id": subnet["id"]})
        if rtype == _VMSS:
            _check_ssh_keys(props)
            props.setdefault("uniqueId", (existing or {}).get("properties", {}).get("uniqueId") or str(uuid.uuid4()))
            props.setdefault("timeCreated", (existing or {}).get("properties", {}).get("timeCreated") or _now())
            sku = resource.setdefault("sku", {})
            sku.setdefault("capacity", 1)
        if rtype == "microsoft.insights/autoscalesettings":
            props["name"] = resource["name"]
            _check_profiles(props)

    # -- scale sets ------------------------------------------------------------------------------------------

    def _vms_of(self, vmss_key: str) -> list[dict[str, Any]]:
        prefix = vmss_key + "/virtualmachines/"
        vms = [v for k, v in self.resources.items() if k.startswith(prefix) and k.count("/") == prefix.count("/")]
        return sorted(vms, key=lambda v: int(v["instanceId"]))

    def _set_vm(
        self,
        vm: dict[str, Any],
        provisioning_state: str | None,
        power_state: str | None,
        latest_model: bool | None,
    ) -> None:
        props = vm["properties"]
        view = props["instanceView"]
        if provisioning_state is not None:
            props["provisioningState"] = provisioning_state
        if power_state is not None:
            view["_power"] = power_state
        if latest_model is not None:
            props["latestModelApplied"] = latest_model
        view["statuses"] = [_prov_code(props["provisioningState"]), _power_code(view["_power"])]

    def _reconcile_instances(self, vmss: dict[str, Any], previous: dict[str, Any] | None) -> None:
        """Make the instance list follow ``sku.capacity``; a changed model marks old instances not-latest."""
        key = vmss["id"].lower()
        capacity = int(vmss.get("sku", {}).get("capacity") or 0)
        vms = self._vms_of(key)
        model_changed = previous is not None and (
            previous.get("properties", {}).get("virtualMachineProfile")
            != vmss.get("properties", {}).get("virtualMachineProfile")
        )
        manual = vmss["properties"].get("upgradePolicy", {}).get("mode", "Manual") == "Manual"
        for vm in vms:
            if model_changed:
                self._set_vm(vm, None, None, not manual)
            if vm["properties"]["provisioningState"] == "Failed":
                # a new PUT/PATCH retries the instances an earlier operation left Failed
                self._set_vm(vm, "Updating", "starting", None)
        # scale in: Azure's default policy removes the highest instance ids first
        for vm in vms[capacity:] if len(vms) > capacity else []:
            del self.resources[vm["id"].lower()]
            self._busy_vms.discard(vm["id"].lower())
        counter = self._next_instance.setdefault(key, itertools.count(len(vms)))
        prefix = (
            vmss["properties"]
            .get("virtualMachineProfile", {})
            .get("osProfile", {})
            .get("computerNamePrefix", vmss["name"][:9])
        )
        for _ in range(capacity - len(vms)):
            n = next(counter)
            vm_id = f"{vmss['id']}/virtualMachines/{n}"
            self.resources[vm_id.lower()] = {
                "id": vm_id,
                "name": f"{vmss['name']}_{n}",
                "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
                "location": vmss.get("location"),
                "instanceId": str(n),
                "sku": {"name": vmss.get("sku", {}).get("name"), "tier": vmss.get("sku", {}).get("tier")},
                "properties": {
                    "latestModelApplied": True,
                    "provisioningState": "Creating",
                    "vmId": str(uuid.uuid4()),
                    "osProfile": {"computerName": f"{prefix}{n:06x}"},
                    "instanceView": {
                        "_power": "starting",
                        "computerName": f"{prefix}{n:06x}",
                        "osName": "ubuntu",
                        "statuses": [],
                    },
                },
            }
            self._set_vm(self.resources[vm_id.lower()], None, None, None)

    def _autoscale_bounds(self, vmss_key: str) -> tuple[int, int] | None:
        for r in self.resources.values():
            props = r.get("properties", {})
            if (
                r.get("type", "").lower() == "microsoft.insights/autoscalesettings"
                and props.get("enabled")
                and str(props.get("targetResourceUri", "")).lower() == vmss_key
                and props.get("profiles")
            ):
                profile = active_profile(props["profiles"], self.now())
                if profile is None:
                    return None
                cap = profile["capacity"]
                return int(cap["minimum"]), int(cap["maximum"])
        return None

    def _enforce_autoscale_on(self, vmss_key: str) -> None:
        """The autoscale engine: a capacity outside an enabled setting's bounds is pulled back inside."""
        if not self.autoscale_enforced:
            return
        vmss = self.resources.get(vmss_key)
        bounds = self._autoscale_bounds(vmss_key)
        if vmss is None or bounds is None or vmss["properties"].get("provisioningState") != "Succeeded":
            return
        capacity = int(vmss.get("sku", {}).get("capacity") or 0)
        wanted = min(max(capacity, bounds[0]), bounds[1])
        if wanted != capacity:
            before = copy.deepcopy(vmss)
            vmss["sku"]["capacity"] = wanted
            self._reconcile_instances(vmss, before)
            for vm in self._vms_of(vmss_key):
                if vm["properties"]["provisioningState"] == "Creating":
                    self._set_vm(vm, "Succeeded", "running", None)

    def _enforce_autoscale_for(self, setting: dict[str, Any]) -> None:
        if setting.get("type", "").lower() == "microsoft.insights/autoscalesettings":
            self._enforce_autoscale_on(str(setting["properties"].get("targetResourceUri", "")).lower())

    def _vm_view(self, vm: dict[str, Any], expand: bool) -> dict[str, Any]:
        out = copy.deepcopy(vm)
        view = out["properties"].pop("instanceView")
        view.pop("_power", None)
        if expand:
            out["properties"]["instanceView"] = view
        return out

    def _vmss_sub(
        self,
        method: str,
        vmss_id: str,
        rest: list[str],
        orig_rest: list[str],
        body: Any,
        base: str,
        failure: InjectedFailure | None,
        expand: bool,
    ) -> tuple[int, dict[str, str], Any]:
        vmss = self._require(vmss_id)
        key = vmss_id.lower()
        vms = self._vms_of(key)
        action = rest[0]
        if len(rest) == 1 and method == "GET" and action == "virtualmachines":
            return 200, {}, {"value": [self._vm_view(v, expand) for v in vms]}
        if len(rest) == 1 and method == "GET" and action == "instanceview":
            summary: dict[str, int] = {}
            for v in vms:
                code = f"ProvisioningState/{v['properties']['provisioningState'].lower()}"
                summary[code] = summary.get(code, 0) + 1
            return (
                200,
                {},
                {
                    "virtualMachine": {"statusesSummary": [{"code": c, "count": n} for c, n in summary.items()]},
                    "statuses": [_prov_code(vmss["properties"].get("provisioningState", "Succeeded"))],
                },
            )
        if len(rest) == 1 and method == "POST" and action in ("reimageall", "reimage", "manualupgrade", "restart"):
            ids = (body or {}).get("instanceIds") if isinstance(body, dict) else None
            if action == "manualupgrade" and not ids:
                raise ArmError(400, "InvalidParameter", "Required parameter 'instanceIds' is missing (null).")
            targets = [v for v in vms if ids is None or v["instanceId"] in {str(i) for i in ids}]
            if ids is not None and len(targets) != len(set(ids)):
                raise ArmError(404, "NotFound", f"Instance ids {ids} are not all in scale set '{vmss['name']}'.")
            for v in targets:
                if action in ("reimageall", "reimage"):
                    self._set_vm(v, "Updating", "starting", None)

            def complete() -> tuple[str, dict[str, Any] | None, Any]:
                with self._lock:
                    if failure is not None:
                        for v in targets:
                            self._set_vm(v, "Failed", None, None)
                        return "Failed", {"code": failure.code, "message": failure.message}, None
                    for v in targets:
                        if action == "manualupgrade":
                            self._set_vm(v, None, None, True)
                        else:
                            self._set_vm(v, "Succeeded", "running", None)
                return "Succeeded", None, None

            op = self._new_operation(complete)
            return 202, self._async_headers(base, vmss_id, op, location=True), None
        if action == "virtualmachines" and len(rest) >= 2:
            vm = self.resources.get(f"{key}/virtualmachines/{rest[1]}")
            if vm is None:
                raise ArmError(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Compute/virtualMachineScaleSets/{vmss['name']}/"
                    f"virtualMachines/{orig_rest[1]}' under resource group "
                    f"'{vmss_id.split('/')[4]}' was not found.",
                )
            if len(rest) == 2 and method == "GET":
                return 200, {}, self._vm_view(vm, expand)
            if len(rest) == 3 and rest[2] == "instanceview" and method == "GET":
                return 200, {}, self._vm_view(vm, True)["properties"]["instanceView"]
            if len(rest) == 3 and rest[2] == "runcommand" and method == "POST":
                return self._run_command(vm, body, base, vmss_id, failure)
        raise ArmError(404, "NotFound", f"No route for {method} {vmss_id}/{'/'.join(orig_rest)}.")

    def _run_command(
        self, vm: dict[str, Any], body: Any, base: str, vmss_id: str, failure: InjectedFailure | None
    ) -> tuple[int, dict[str, str], Any]:
        vm_key = vm["id"].lower()
        if not isinstance(body, dict) or body.get("commandId") not in (
            "RunShellScript",
            "RunPowerShellScript",
        ):
            raise ArmError(400, "InvalidParameter", "The value of parameter commandId is invalid.")
        if vm_key in self._busy_vms:
            raise ArmError(
                409,
                "Conflict",
                "Run command extension execution is in progress. Please wait for completion before "
                "invoking a run command.",
            )
        if vm["properties"]["instanceView"]["_power"] != "running":
            raise ArmError(
                409,
                "OperationNotAllowed",
                "Operation 'RunCommand' is not allowed on VM since the VM is not running.",
            )
        self._busy_vms.add(vm_key)
        instance_id = vm["instanceId"]
        script = [str(line) for line in body.get("script") or []]
        responder = self.run_command_responder

        def complete() -> tuple[str, dict[str, Any] | None, Any]:
            try:
                if failure is not None:
                    return "Failed", {"code": failure.code, "message": failure.message}, None
                try:
                    answer = responder(instance_id, script)  # outside the lock: it may block on purpose
                except Exception as exc:  # the responder emulates a failing VM agent
                    return "Failed", {"code": "VMAgentStatusCommunicationError", "message": str(exc)}, None
                stdout, stderr = answer if isinstance(answer, tuple) else (answer, "")
                # the real service keeps only the last 4 KB of each stream
                message = f"Enable succeeded: \n[stdout]\n{stdout[-4096:]}\n[stderr]\n{stderr[-4096:]}"
                result = {
                    "value": [
                        {
                            "code": "ProvisioningState/succeeded",
                            "level": "Info",
                            "displayStatus": "Provisioning succeeded",
                            "message": message,
                        }
                    ]
                }
                return "Succeeded", None, result
            finally:
                with self._lock:
                    self._busy_vms.discard(vm_key)

        op = self._new_operation(complete)
        return 202, self._async_headers(base, vmss_id, op, location=True), None

    # -- operations ------------------------------------------------------------------------------------------

    def _new_operation(self, complete: Callable[[], tuple[str, dict[str, Any] | None, Any]]) -> _Operation:
        op = _Operation(id=str(uuid.uuid4()), polls_left=self.lro_polls, complete=complete)
        with self._lock:
            self._operations[op.id] = op
        return op

    def _advance(self, op_id: str) -> _Operation:
        with self._lock:
            op = self._operations.get(op_id)
            if op is None:
                raise ArmError(404, "NotFound", f"Operation {op_id} was not found.")
            run = False
            if op.status == "InProgress" and not op.completing:
                if op.polls_left > 0:
                    op.polls_left -= 1
                else:
                    op.completing = run = True
        if run:
            status, error, result = op.complete()
            with self._lock:
                op.status, op.error, op.result, op.completing = status, error, result, False
                self._changed.notify_all()
        return op

    def _operation_status(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self._advance(op_id)
        body: dict[str, Any] = {"name": op.id, "status": op.status, "startTime": op.started}
        if op.status != "InProgress":
            body["endTime"] = _now()
        if op.error is not None:
            body["error"] = op.error
        return 200, {"Retry-After": "0"} if op.status == "InProgress" else {}, body

    def _operation_result(self, op_id: str, url: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        op = self._advance(op_id)
        if op.status == "InProgress":
            qs = "&".join(f"{k}={v}" for k, v in query.items())
            return 202, {"Location": f"{url}?{qs}", "Retry-After": "0"}, None
        if op.status == "Failed":
            err = op.error or {"code": "OperationFailed", "message": "The operation failed."}
            raise ArmError(400 if err.get("code") != "Conflict" else 409, err["code"], err["message"])
        if op.result is None:
            return 204, {}, None
        return 200, {}, op.result


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads: nothing is left running
    block_on_close = True

    def __init__(
        self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext, fake: FakeARM
    ) -> None:
        super().__init__(addr, handler)
        self.ssl_context = ctx
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._closing = False

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # the handshake runs in the handler thread, so a slow client never blocks accept()
        tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conns_lock:
            self._conns.add(tls)
        return tls, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        self._closing = True
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            # the plain-socket shutdown wakes a handler blocked reading a keep-alive connection
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if self._closing or isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, OSError)):
            return  # clients hanging up and our own shutdown are not errors
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # an idle keep-alive connection is closed after this
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _dispatch(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        fake._log(LoggedRequest(self.command, split.path, query, body))
        status: int
        headers: dict[str, str]
        payload: Any
        try:
            auth = self.headers.get("Authorization", "")
            if not auth:
                raise ArmError(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                    {
                        "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                        'common", error="invalid_token", error_description="The '
                        "authentication failed because of missing 'Authorization' "
                        'header."'
                    },
                )
            if auth != f"Bearer {fake.token}":
                raise ArmError(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                    {
                        "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                        'common", error="invalid_token", error_description="The '
                        'access token is invalid."'
                    },
                )
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            status, headers, payload = fake.handle(self.command, split.path, query, body, host)
        except ArmError as err:
            status, headers = err.status, {**err.headers, "x-ms-failure-cause": "gateway"}
            payload = {"error": {"code": err.code, "message": err.message}}
        data = b"" if payload is None or self.command == "HEAD" else json.dumps(payload).encode()
        self.send_response(status)
        headers = {"x-ms-request-id": str(uuid.uuid4()), **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = do_HEAD = _dispatch


@contextmanager
def running_fake_arm(**kwargs: Any) -> Iterator[FakeARM]:
    """Start a :class:`FakeARM`, yield it, stop it (all threads joined)."""
    fake = FakeARM(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _fixture() -> Any:
    import pytest

    @pytest.fixture
    def fake_arm() -> Iterator[FakeARM]:
        """A running :class:`FakeARM` (``.endpoint``, ``.ca_bundle``, ``.credential`` + test controls)."""
        with running_fake_arm() as fake:
            yield fake

    return fake_arm


fake_arm = _fixture()
