"""The Access service token's lifetime: created with a stated duration, its expiry shown, refreshed when it
comes within 30 days, refresh and rotation through Cloudflare's own calls — and never the secret in any
output. Real ``cloudflare`` SDK against the fake Cloudflare API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codecapsule.cluster.plan import Plan
from codecapsule.cluster.spec import ClusterSpec
from codecapsule.cluster.tunnel import ServiceTokenInfo, TunnelProvider
from tests.fakes.cloudflare import FakeCloudflare, fake_cloudflare  # noqa: F401  (fixture)

from .test_tunnel_provider import config_home, only, progress, provider, spec  # noqa: F401  (fixtures)


def _remote(fake: FakeCloudflare) -> dict[str, Any]:
    with fake.lock:
        return dict(only(fake.service_tokens.values()))


def _expire_in(fake: FakeCloudflare, days: float) -> None:
    with fake.lock:
        token = only(fake.service_tokens.values())
        when = datetime.now(UTC) + timedelta(days=days)
        token["expires_at"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _days(info: ServiceTokenInfo | None) -> float:
    assert info is not None
    left = info.days_left()
    assert left is not None
    return left


def test_the_token_is_created_with_a_duration_and_its_expiry_is_shown(
    provider: TunnelProvider,  # noqa: F811
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],  # noqa: F811
) -> None:
    provider.deploy(progress=progress.append)
    create = only(r for r in fake_cloudflare.requests if r.operation == "service_tokens.create")
    assert create.body["duration"] == "8760h"
    info = provider.service_token_info()
    assert info is not None and info.duration == "8760h" and info.saved_here
    assert 364 < _days(info) <= 365 and not info.expiring()
    status = provider.status()
    assert status.service_token == info
    assert "expires" in info.expiry_text() and "(364 days)" in info.expiry_text()


def test_a_token_near_its_expiry_is_refreshed_by_deploy_with_the_same_secret(
    provider: TunnelProvider,  # noqa: F811
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],  # noqa: F811
) -> None:
    provider.deploy(progress=progress.append)
    secret = _remote(fake_cloudflare)["client_secret"]
    _expire_in(fake_cloudflare, 10)
    info = provider.service_token_info()
    assert info is not None and info.expiring() and not info.expired()

    (change,) = [c for c in provider.plan() if c.resource == "access service token"]
    assert change.action == "update" and change.detail.startswith("refresh: expires")
    fake_cloudflare.clear_log()
    provider.deploy(progress=progress.append)
    assert fake_cloudflare.operations(writes_only=True) == ["service_tokens.refresh"]
    assert _days(provider.service_token_info()) > 364
    assert _remote(fake_cloudflare)["client_secret"] == secret  # clients keep working

    _expire_in(fake_cloudflare, -1)
    expired = provider.service_token_info()
    assert expired is not None and expired.expired() and expired.expiry_text().startswith("EXPIRED on")


def test_refresh_and_rotate_keep_the_secret_out_of_every_output(
    provider: TunnelProvider,  # noqa: F811
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    progress: list[str],  # noqa: F811
) -> None:
    provider.deploy(progress=progress.append)
    first_secret = _remote(fake_cloudflare)["client_secret"]
    _expire_in(fake_cloudflare, 3)

    refreshed = provider.refresh_service_token(progress=progress.append)
    assert _days(refreshed) > 364 and _remote(fake_cloudflare)["client_secret"] == first_secret

    _expire_in(fake_cloudflare, 3)
    rotated = provider.rotate_service_token(progress=progress.append)
    new_secret = _remote(fake_cloudflare)["client_secret"]
    assert new_secret != first_secret
    saved = provider.service_token()
    assert saved is not None and saved.client_secret == new_secret  # saved privately, for the clients here
    # Cloudflare's rotate alone keeps the old expiry; ours refreshes too.
    assert _days(rotated) > 364 and rotated.saved_here

    shown = "\n".join([*progress, repr(rotated), str(rotated), repr(saved), repr(provider)])
    assert first_secret not in shown and new_secret not in shown


def test_a_changed_duration_is_applied_and_the_expiry_follows(
    spec: ClusterSpec,  # noqa: F811
    fake_cloudflare: FakeCloudflare,  # noqa: F811
    config_home: Path,  # noqa: F811
    progress: list[str],  # noqa: F811
) -> None:
    TunnelProvider(spec, fake_cloudflare.api_token, max_retries=0).deploy(progress=progress.append)
    shorter = TunnelProvider(spec.with_(access_token_duration="720h"), fake_cloudflare.api_token, max_retries=0)
    (change,) = [c for c in shorter.plan() if c.resource == "access service token"]
    assert change.detail == "duration 8760h → 720h"
    shorter.deploy(progress=progress.append)
    info = shorter.service_token_info()
    assert info is not None and info.duration == "720h" and 29 < _days(info) <= 30
    # a 30-day token warns from half its life, not from day one
    assert info.warn_days == 15 and not info.expiring() and Plan.of(shorter.plan()).empty


@pytest.mark.parametrize("duration", ["1y", "0h", "forever", "8760"])
def test_a_duration_cloudflare_would_refuse_is_refused_by_the_spec(spec: ClusterSpec, duration: str) -> None:  # noqa: F811
    from codecapsule._errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="whole hours"):
        spec.with_(access_token_duration=duration)
