"""TunnelProvider with the real ``cloudflare`` SDK against the stateful fake Cloudflare API (127.0.0.1)."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codecapsule._errors import CloudAPIError, ClusterError, ConfigurationError
from codecapsule.cluster import secrets_store
from codecapsule.cluster.plan import Plan
from codecapsule.cluster.spec import ClusterSpec
from codecapsule.cluster.tunnel import ServiceToken, TunnelProvider
from tests.fakes.cloudflare import FakeCloudflare, fake_cloudflare  # noqa: F401  (fixture)

SUBSCRIPTION = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("CODECAPSULE_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def spec(fake_cloudflare: FakeCloudflare) -> ClusterSpec:  # noqa: F811
    return ClusterSpec(
        domain=fake_cloudflare.zone_name,
        subscription_id=SUBSCRIPTION,
        cloudflare_account_id=fake_cloudflare.account_id,
        cloudflare_endpoint=fake_cloudflare.endpoint,
    )


@pytest.fixture
def provider(spec: ClusterSpec, fake_cloudflare: FakeCloudflare, config_home: Path) -> TunnelProvider:  # noqa: F811
    # max_retries=0: an injected 5xx fails at once instead of after the SDK's back-off.
    return TunnelProvider(spec, fake_cloudflare.api_token, max_retries=0)


@pytest.fixture
def progress() -> list[str]:
    return []


def deploy(provider: TunnelProvider, progress: list[str]) -> str:
    return provider.deploy(progress=progress.append)


def only(items: Any) -> Any:
    items = list(items)
    assert len(items) == 1, items
    return items[0]


def dns_for(fake: FakeCloudflare, host: str) -> list[dict[str, Any]]:
    with fake.lock:
        return [dict(r) for r in fake.dns_records.values() if r["name"] == host]


# -- deploy -------------------------------------------------------------------------------------------


def test_deploy_creates_tunnel_ingress_access_and_dns(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    config_home: Path,
    progress: list[str],
) -> None:
    tunnel_id = deploy(provider, progress)

    tunnel = only(fake_cloudflare.live_tunnels())
    assert tunnel["id"] == tunnel_id and tunnel["name"] == spec.tunnel_name
    assert tunnel["config_src"] == "cloudflare"

    with fake_cloudflare.lock:
        ingress = fake_cloudflare.configs[tunnel_id]["config"]["ingress"]
        app = only(fake_cloudflare.access_apps.values())
        policy = fake_cloudflare.access_policies[only(app["policies"])["id"]]
        token = only(fake_cloudflare.service_tokens.values())
    assert ingress == [
        {"hostname": spec.hostname, "service": "http://localhost:2000"},
        {"service": "http_status:404"},
    ]

    record = only(dns_for(fake_cloudflare, spec.hostname))
    assert (record["type"], record["content"], record["proxied"]) == (
        "CNAME",
        f"{tunnel_id}.cfargotunnel.com",
        True,
    )

    assert (app["type"], app["domain"]) == ("self_hosted", spec.hostname)
    assert policy["decision"] == "non_identity"
    assert policy["include"] == [{"service_token": {"token_id": token["id"]}}]

    # The secret Cloudflare showed once is saved privately, and read back by service_token().
    saved = provider.service_token()
    assert saved == ServiceToken(token["client_id"], token["client_secret"])
    path = secrets_store.service_token_path(spec.cloudflare_account_id, spec.tunnel_name)
    assert path.is_relative_to(config_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(config_home.stat().st_mode) == 0o700

    # DNS goes last, so the name never resolves before Access protects it.
    writes = fake_cloudflare.operations(writes_only=True)
    assert writes.index("apps.create") < writes.index("dns.create") == len(writes) - 1
    assert progress and all(line[0].isupper() and line.endswith(".") for line in progress)


def test_plan_is_read_only_with_one_change_per_resource(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],
) -> None:
    changes = provider.plan()
    assert [(c.action, c.resource) for c in changes] == [
        ("create", "tunnel"),
        ("create", "tunnel ingress"),
        ("create", "access service token"),
        ("create", "access policy"),
        ("create", "access application"),
        ("create", "dns record"),
    ]
    assert fake_cloudflare.operations(writes_only=True) == []
    assert fake_cloudflare.live_tunnels() == []

    deploy(provider, progress)
    assert Plan.of(provider.plan()).empty


def test_second_deploy_creates_nothing(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],
) -> None:
    first = deploy(provider, progress)
    fake_cloudflare.clear_log()

    assert deploy(provider, progress) == first
    assert fake_cloudflare.operations(writes_only=True) == []
    assert len(fake_cloudflare.live_tunnels()) == 1
    with fake_cloudflare.lock:
        assert len(fake_cloudflare.service_tokens) == 1 and len(fake_cloudflare.access_apps) == 1
        assert len(fake_cloudflare.access_policies) == 1 and len(fake_cloudflare.dns_records) == 1


def test_a_cname_pointing_elsewhere_is_fixed(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    stale = fake_cloudflare.add_dns_record(spec.hostname, "CNAME", "old-host.example.net", proxied=False)

    dns_change = only(c for c in provider.plan() if c.resource == "dns record")
    assert dns_change.action == "update" and "old-host.example.net" in dns_change.detail

    tunnel_id = deploy(provider, progress)
    record = only(dns_for(fake_cloudflare, spec.hostname))
    assert record["id"] == stale["id"]  # updated in place, not duplicated
    assert (record["content"], record["proxied"]) == (f"{tunnel_id}.cfargotunnel.com", True)
    assert "dns.update" in fake_cloudflare.operations() and "dns.create" not in fake_cloudflare.operations()


def test_an_a_record_on_the_hostname_is_a_clear_error(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    fake_cloudflare.add_dns_record(spec.hostname, "A", "192.0.2.10")
    with pytest.raises(ClusterError, match=r"A record \(192\.0\.2\.10\).*delete that record"):
        deploy(provider, progress)
    assert "dns.create" not in fake_cloudflare.operations()


def test_lost_local_secret_rotates_the_service_token(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    deploy(provider, progress)
    before = provider.service_token()
    assert before is not None
    assert secrets_store.delete_service_token(spec.cloudflare_account_id, spec.tunnel_name)
    assert provider.service_token() is None

    token_change = only(c for c in provider.plan() if c.resource == "access service token")
    assert token_change.action == "update" and "rotate" in token_change.detail

    fake_cloudflare.clear_log()
    deploy(provider, progress)
    # rotation keeps the old expiry, so the deploy refreshes the token too
    assert fake_cloudflare.operations(writes_only=True) == ["service_tokens.rotate", "service_tokens.refresh"]
    after = provider.service_token()
    with fake_cloudflare.lock:
        remote = only(fake_cloudflare.service_tokens.values())
    assert after == ServiceToken(remote["client_id"], remote["client_secret"])
    assert after.client_secret != before.client_secret


def test_a_failure_half_way_is_clear_and_the_next_deploy_finishes(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    fake_cloudflare.fail("apps.create", status=500, message="Internal server error")
    with pytest.raises(CloudAPIError) as failed:
        deploy(provider, progress)
    err = failed.value
    assert (err.service, err.status_code) == ("cloudflare", 500)
    assert "Access application" in str(err) and "run it again" in str(err)
    assert dns_for(fake_cloudflare, spec.hostname) == []  # the hostname never resolved unprotected

    fake_cloudflare.clear_log()
    deploy(provider, progress)
    assert sorted(fake_cloudflare.operations(writes_only=True)) == ["apps.create", "dns.create"]
    assert len(fake_cloudflare.live_tunnels()) == 1


# -- secrets ------------------------------------------------------------------------------------------


def test_tunnel_token_never_shows_up_in_text(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    tunnel_id = deploy(provider, progress)
    token = provider.tunnel_token()
    assert token == fake_cloudflare.tunnel_token(tunnel_id)

    fake_cloudflare.fail("dns.list", status=500)
    with pytest.raises(CloudAPIError) as failed:
        provider.status()
    service_token = provider.service_token()
    assert service_token is not None

    texts = [
        repr(provider),
        str(Plan.of(provider.plan())),
        Plan.of(provider.plan())._repr_html_(),
        repr(provider.status()),
        repr(service_token),
        str(service_token),
        str(failed.value),
        *progress,
    ]
    secrets = [token, fake_cloudflare.api_token, service_token.client_secret]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert service_token.client_id in repr(service_token)


# -- status -------------------------------------------------------------------------------------------


def test_status_reports_connectors(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],
) -> None:
    empty = provider.status()
    assert (empty.tunnel_id, empty.status, empty.connectors) == (None, None, ())
    assert not (empty.dns_ok or empty.ingress_ok or empty.access_protected)

    tunnel_id = deploy(provider, progress)
    before = provider.status()
    assert (before.tunnel_id, before.status, before.connectors) == (tunnel_id, "inactive", ())
    assert before.dns_ok and before.ingress_ok and before.access_protected
    assert before.dns_target == f"{tunnel_id}.cfargotunnel.com"

    connector_id = fake_cloudflare.connect(tunnel_id, colo="AMS", origin_ip="10.0.1.4")
    after = provider.status()
    assert after.status == "healthy"
    connector = only(after.connectors)
    assert (connector.connector_id, connector.colo, connector.origin_ip) == (connector_id, "AMS", "10.0.1.4")
    assert connector.opened_at and connector.pending_reconnect is False

    fake_cloudflare.disconnect(tunnel_id)
    assert provider.status().status == "down"


def test_status_notices_a_broken_setup(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    deploy(provider, progress)
    with fake_cloudflare.lock:
        record = only(r for r in fake_cloudflare.dns_records.values() if r["name"] == spec.hostname)
        record["proxied"] = False
        app = only(fake_cloudflare.access_apps.values())
        app["policies"] = []
    status = provider.status()
    assert not status.dns_ok and not status.access_protected and status.ingress_ok


# -- teardown -----------------------------------------------------------------------------------------


def test_teardown_with_live_connections_leaves_nothing(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    spec: ClusterSpec,
    progress: list[str],
) -> None:
    tunnel_id = deploy(provider, progress)
    fake_cloudflare.connect(tunnel_id)
    fake_cloudflare.add_dns_record("www", "A", "192.0.2.1")  # not ours: must survive
    fake_cloudflare.clear_log()

    provider.teardown(progress=progress.append)

    assert fake_cloudflare.live_tunnels() == []
    with fake_cloudflare.lock:
        assert [r["name"] for r in fake_cloudflare.dns_records.values()] == [f"www.{spec.domain}"]
        assert fake_cloudflare.access_apps == {} and fake_cloudflare.access_policies == {}
        assert fake_cloudflare.service_tokens == {}
    assert provider.service_token() is None
    writes = fake_cloudflare.operations(writes_only=True)
    assert writes == [
        "dns.delete",
        "apps.delete",
        "policies.delete",
        "service_tokens.delete",
        "connections.delete",
        "tunnels.delete",
    ]

    # Again: nothing left to delete. Then a new deploy makes a new tunnel (the deleted one is not reused).
    fake_cloudflare.clear_log()
    provider.teardown(progress=progress.append)
    assert fake_cloudflare.operations(writes_only=True) == []
    assert deploy(provider, progress) != tunnel_id


# -- errors -------------------------------------------------------------------------------------------


def test_a_bad_api_token_names_the_fix_not_the_token(
    spec: ClusterSpec,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    config_home: Path,
    progress: list[str],
) -> None:
    bad_token = "definitely-not-the-right-token-0123456789"
    provider = TunnelProvider(spec, bad_token, max_retries=0)
    with pytest.raises(CloudAPIError) as failed:
        deploy(provider, progress)
    err = failed.value
    assert (err.service, err.status_code, err.code) == ("cloudflare", 403, "10000")
    message = str(err)
    for permission in ("Cloudflare Tunnel:Edit", "DNS:Edit", "Access: Apps and Policies:Edit"):
        assert permission in message
    assert "CLOUDFLARE_API_TOKEN" in message
    assert bad_token not in message and bad_token not in repr(provider)
    assert fake_cloudflare.live_tunnels() == []


def test_a_token_without_dns_permission_names_it(
    provider: TunnelProvider,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],
) -> None:
    fake_cloudflare.fail("dns.create", status=403, code=10000, message="Authentication error")
    with pytest.raises(CloudAPIError, match="lacks permission DNS:Edit"):
        deploy(provider, progress)


def test_a_domain_that_is_not_a_zone_is_a_clear_error(
    spec: ClusterSpec,
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    config_home: Path,
    progress: list[str],
) -> None:
    provider = TunnelProvider(
        spec.with_(domain="not-my-zone.org", hostname=""), fake_cloudflare.api_token, max_retries=0
    )
    with pytest.raises(CloudAPIError, match="must be a zone in this Cloudflare account") as failed:
        provider.plan()
    assert failed.value.code == "zone_not_found" and "not-my-zone.org" in str(failed.value)
    with pytest.raises(CloudAPIError, match="must be a zone"):
        deploy(provider, progress)
    assert fake_cloudflare.operations(writes_only=True) == []


def test_an_unreachable_api_is_a_clear_error(
    spec: ClusterSpec, config_home: Path, progress: list[str], closed_port: int
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}/client/v4"
    provider = TunnelProvider(spec.with_(cloudflare_endpoint=endpoint), "some-token-value", max_retries=0)
    with pytest.raises(CloudAPIError, match="could not reach the Cloudflare API") as failed:
        provider.status()
    assert failed.value.code == "connection_error" and endpoint in str(failed.value)


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port  # nothing listens here any more


# -- the secrets store --------------------------------------------------------------------------------


def test_secrets_store_round_trip(config_home: Path) -> None:
    assert secrets_store.load_service_token("acct", "tun") is None
    token = ServiceToken("id.access", "s3cret-value")
    path = secrets_store.save_service_token("acct", "tun", token)
    assert secrets_store.load_service_token("acct", "tun") == token
    assert secrets_store.load_service_token("acct", "other") is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret-value" not in repr(token)
    assert secrets_store.delete_service_token("acct", "tun") is True
    assert secrets_store.delete_service_token("acct", "tun") is False
    assert list(path.parent.iterdir()) == []  # no temporary files left behind


def test_secrets_store_refuses_damaged_files_and_odd_names(config_home: Path) -> None:
    path = secrets_store.save_service_token("acct", "tun", ServiceToken("a", "b"))
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="damaged; delete the file"):
        secrets_store.load_service_token("acct", "tun")
    with pytest.raises(ConfigurationError, match="file name"):
        secrets_store.save_service_token("../escape", "tun", ServiceToken("a", "b"))
