"""`doctor`: each row of the troubleshooting table is detected and answered with its fix.

All traffic stays on 127.0.0.1; the DNS failure uses a name that cannot even be encoded (a 70-character
label),
so the lookup fails inside the resolver without sending a query anywhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codecapsule.cluster import Cluster
from codecapsule.cluster.doctor import FIXES, Check, format_checks, run_doctor
from tests.fakes.arm import FakeARM
from tests.fakes.cloudflare import FakeCloudflare


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def bad_gateway() -> Iterator[str]:
    """What Cloudflare's edge answers when the tunnel is up but nothing listens behind it: 502, any path."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><title>502 Bad Gateway</title></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_client_side_only_with_a_piston_url(piston_url: str) -> None:
    checks = run_doctor(env={"CODECAPSULE_PISTON_URL": piston_url})
    found = by_name(checks)
    for name in (
        "endpoint configured",
        "DNS name resolves",
        "Piston answers (GET /)",
        "runtimes API (GET /api/v2/runtimes)",
        "runs code (print(1) in python)",
    ):
        assert found[name].ok is True, found[name]
    # No cluster credentials: the admin checks are skipped, and say why.
    for name in ("tunnel has connectors", "instances healthy"):
        assert found[name].skipped and "credentials" in found[name].detail
    assert "0 failed" in format_checks(checks)


def test_no_endpoint_says_how_to_set_one() -> None:
    checks = run_doctor(env={})
    first = checks[0]
    assert (first.name, first.ok) == ("endpoint configured", False)
    assert "CODECAPSULE_PISTON_URL" in first.fix
    assert all(c.skipped for c in checks[1:])
    assert "fix: set CODECAPSULE_PISTON_URL" in format_checks(checks)


def test_502_points_at_cloudflared_and_piston(bad_gateway: str) -> None:
    found = by_name(run_doctor(env={"CODECAPSULE_PISTON_URL": bad_gateway}))
    root = found["Piston answers (GET /)"]
    assert root.ok is False and "502" in root.detail
    assert root.fix == FIXES["502"] and "cloudflared" in root.fix
    assert found["runtimes API (GET /api/v2/runtimes)"].skipped


def test_404_means_a_wrong_path(piston_url: str) -> None:
    found = by_name(run_doctor(env={"CODECAPSULE_PISTON_URL": piston_url + "/api/v2"}))
    root = found["Piston answers (GET /)"]
    assert root.ok is False and "404" in root.detail and root.fix == FIXES["404"]


def test_dns_failure_means_the_cname_is_missing() -> None:
    url = "https://" + "x" * 70 + ".example.edu"
    found = by_name(run_doctor(env={"CODECAPSULE_PISTON_URL": url}))
    dns = found["DNS name resolves"]
    assert dns.ok is False and "CNAME" in dns.fix
    assert found["Piston answers (GET /)"].skipped


def test_admin_side_finds_a_missing_runtime_and_a_dead_connector(
    cluster: Cluster, arm: FakeARM, cloudflare: FakeCloudflare
) -> None:
    cluster.deploy(progress=False)
    tunnel_id = cloudflare.live_tunnels()[0]["id"]
    connector = cloudflare.connect(tunnel_id)
    healthy = by_name(run_doctor(cluster, env={}))
    assert all(c.ok for c in healthy.values()), format_checks(list(healthy.values()))

    # A runtime the spec wants but Piston does not have; the VM's cloudflared goes away; a VM fails.
    wanting_rust = Cluster(
        cluster.spec.with_(runtimes=(*cluster.spec.runtimes, ("rust", "1.68.2"))),
        credential=arm.credential,
        cloudflare_token=cloudflare.api_token,
    )
    cloudflare.disconnect(tunnel_id, connector)
    arm.set_instance_state(cluster.spec.vmss_name, "0", provisioning_state="Failed")
    found = by_name(run_doctor(wanting_rust, env={}))
    installed = found["runtimes installed"]
    assert installed.ok is False and "rust 1.68.2" in installed.detail and installed.fix == FIXES["unknown runtime"]
    connectors = found["tunnel has connectors"]
    assert connectors.ok is False and connectors.fix == FIXES["no connectors"]
    instances = found["instances healthy"]
    assert instances.ok is False and "0: Failed" in instances.detail
    assert found["DNS record points at the tunnel"].ok and found["protected by Cloudflare Access"].ok
    text = format_checks(list(found.values()))
    assert "3 failed" in text and "codecapsule cluster install" in text
    secret = cluster.service_token()
    assert secret is not None and secret.client_secret not in text


def test_checks_render_as_text() -> None:
    check = Check("Piston answers (GET /)", False, "HTTP 502: tunnel up, origin down", FIXES["502"])
    assert str(check).startswith("[FAIL] Piston answers (GET /): HTTP 502")
    assert "fix: " in str(check)
    assert str(Check("x", None, "why")) == "[skip] x: why"
    assert json.dumps([c.__dict__ for c in [check]])  # plain data, easy to serialise


def test_doctor_warns_before_the_access_token_expires(cluster: Cluster, cloudflare: FakeCloudflare) -> None:
    from datetime import UTC, datetime, timedelta

    cluster.deploy(progress=False)
    cloudflare.connect(cloudflare.live_tunnels()[0]["id"])
    valid = by_name(run_doctor(cluster, env={}))["Access service token valid"]
    assert valid.ok is True and "expires" in valid.detail and "(duration 8760h)" in valid.detail
    with cloudflare.lock:
        (token,) = cloudflare.service_tokens.values()
        token["expires_at"] = (datetime.now(UTC) + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    soon = by_name(run_doctor(cluster, env={}))["Access service token valid"]
    assert soon.ok is False and soon.fix == FIXES["token expiry"] and "codecapsule cluster token refresh" in soon.fix
    assert token["client_secret"] not in str(soon)
    status = cluster.status()
    assert any("refresh_access_token" in w for w in status.warnings) and status.service_token is not None
    with cloudflare.lock:
        token["expires_at"] = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    expired = cluster.status()
    assert any("EXPIRED" in p and "every request is refused" in p for p in expired.problems) and not expired.healthy
    assert "EXPIRED on" in by_name(run_doctor(cluster, env={}))["Access service token valid"].detail
