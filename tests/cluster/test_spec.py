"""ClusterSpec holds every bound once: capacities, CPU thresholds, SSH keys Azure accepts, lab hours."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from codecapsule._errors import InvalidRequest, MissingCredentials
from codecapsule.cluster import Cluster
from codecapsule.cluster.spec import MAX_CAPACITY, ClusterSpec

BASE: dict[str, Any] = {"domain": "example.edu", "subscription_id": "", "cloudflare_account_id": "acc"}


def _openssh(key: Any) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode() + " teacher@laptop"


def test_an_rsa_key_is_accepted() -> None:
    key = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert ClusterSpec(**BASE, ssh_public_key=key + "\n").ssh_public_key == key


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda: ed25519.Ed25519PrivateKey.generate(), "ssh-ed25519 key, but Azure accepts only RSA"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256 key, but Azure accepts only RSA"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024-bit RSA key"),
    ],
)
def test_keys_azure_refuses_are_refused_with_the_reason(make: Any, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason) as caught:
        ClusterSpec(**BASE, ssh_public_key=_openssh(make()))
    assert "ssh-keygen -t rsa -b 3072" in str(caught.value)


def test_garbage_is_not_a_key() -> None:
    with pytest.raises(InvalidRequest, match="one OpenSSH public key line"):
        ClusterSpec(**BASE, ssh_public_key="ssh-rsa not-base64!")


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"max_capacity": MAX_CAPACITY + 1}, "between 0 and 100"),
        ({"min_capacity": 0, "capacity": 0}, "1 ≤ minimum ≤ maximum"),
        ({"scale_out_cpu": 100}, "scale_out_cpu < 100"),
        ({"scale_in_cpu": 80}, "scale_in_cpu < scale_out_cpu"),
        ({"capacity": 7}, "outside the autoscale range"),
        ({"idle_capacity": -1}, "idle_capacity must be a whole number"),
    ],
)
def test_bounds_are_checked_once_in_the_spec(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ClusterSpec(**{**BASE, **changes})


def test_cluster_scale_and_autoscale_use_the_same_rule() -> None:
    cluster = Cluster(ClusterSpec(**BASE))
    # refused before any cloud call (no credentials are needed to say no)
    with pytest.raises(InvalidRequest, match="between 0 and 100"):
        cluster.scale(101)
    with pytest.raises(InvalidRequest, match="between 0 and 100"):
        cluster.azure.scale(1000)


def test_from_env_reads_the_optional_variables_and_names_the_missing_ones() -> None:
    with pytest.raises(MissingCredentials, match="CODECAPSULE_DOMAIN, AZURE_SUBSCRIPTION_ID"):
        ClusterSpec.from_env({})
    spec = ClusterSpec.from_env(
        {
            "CODECAPSULE_DOMAIN": "example.edu",
            "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
            "CLOUDFLARE_ACCOUNT_ID": "acc",
            "CODECAPSULE_POLL_INTERVAL": "0.5",
            "CODECAPSULE_PISTON_URL": "http://127.0.0.1:2000/",
            "CODECAPSULE_TIMEZONE": "America/New_York",
        }
    )
    assert spec.poll_interval == 0.5 and spec.piston_url == "http://127.0.0.1:2000"
    assert spec.azure_time_zone == "Eastern Standard Time"
    preview = ClusterSpec.preview({})
    assert preview.domain == "example.edu" and preview.subscription_id == ""
