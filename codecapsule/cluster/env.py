"""The one place the cluster code reads environment variables.

| variable                            | what                                                        |
|-------------------------------------|-------------------------------------------------------------|
| ``CODECAPSULE_DOMAIN``              | the Cloudflare zone (ClusterSpec.domain), required          |
| ``AZURE_SUBSCRIPTION_ID``           | ClusterSpec.subscription_id, required                       |
| ``CLOUDFLARE_ACCOUNT_ID``           | ClusterSpec.cloudflare_account_id, required                 |
| ``CODECAPSULE_LOCATION``            | Azure region                                                |
| ``CODECAPSULE_RESOURCE_GROUP``      | resource group name                                         |
| ``CODECAPSULE_SSH_PUBLIC_KEY``      | an RSA (≥ 2048 bit) OpenSSH public key for the VMs          |
| ``CODECAPSULE_AZURE_ENDPOINT``      | ARM endpoint (sovereign clouds, tests)                      |
| ``CODECAPSULE_CLOUDFLARE_ENDPOINT`` | Cloudflare API endpoint                                     |
| ``CODECAPSULE_AZURE_CA_BUNDLE``     | CA bundle for the ARM endpoint                              |
| ``CODECAPSULE_POLL_INTERVAL``       | seconds between long-running-operation polls                |
| ``CODECAPSULE_PISTON_URL``          | reach Piston another way than https://<hostname>            |
| ``CODECAPSULE_TIMEZONE``            | IANA zone of the lab hours                                  |
| ``CODECAPSULE_LAB_HOURS``           | ``Mon,Wed 09:00-12:00 3-5; Fri 13:00-17:00 2-4``            |
| ``CODECAPSULE_IDLE_CAPACITY``       | VMs outside lab hours (default 0)                           |
| ``CLOUDFLARE_API_TOKEN``            | the Cloudflare API token (secret)                           |
| ``CODECAPSULE_AZURE_ACCESS_TOKEN``  | a ready ARM access token instead of azure-identity (secret)  |
| ``CODECAPSULE_CONFIG_DIR``          | where the Access service-token secret is saved              |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "ENV_AZURE_ACCESS_TOKEN",
    "ENV_CLOUDFLARE_TOKEN",
    "OPTIONAL_SPEC_ENV",
    "REQUIRED_SPEC_ENV",
    "config_dir",
    "environment",
    "missing_required",
]

ENV_CLOUDFLARE_TOKEN = "CLOUDFLARE_API_TOKEN"
ENV_AZURE_ACCESS_TOKEN = "CODECAPSULE_AZURE_ACCESS_TOKEN"
ENV_CONFIG_DIR = "CODECAPSULE_CONFIG_DIR"

#: ClusterSpec field → the variable that must give it (unless passed as a keyword).
REQUIRED_SPEC_ENV: dict[str, str] = {
    "domain": "CODECAPSULE_DOMAIN",
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "cloudflare_account_id": "CLOUDFLARE_ACCOUNT_ID",
}
#: ClusterSpec field → an optional variable (text; ClusterSpec converts and validates it).
OPTIONAL_SPEC_ENV: dict[str, str] = {
    "location": "CODECAPSULE_LOCATION",
    "resource_group": "CODECAPSULE_RESOURCE_GROUP",
    "ssh_public_key": "CODECAPSULE_SSH_PUBLIC_KEY",
    "azure_endpoint": "CODECAPSULE_AZURE_ENDPOINT",
    "cloudflare_endpoint": "CODECAPSULE_CLOUDFLARE_ENDPOINT",
    "azure_ca_bundle": "CODECAPSULE_AZURE_CA_BUNDLE",
    "poll_interval": "CODECAPSULE_POLL_INTERVAL",
    "piston_url": "CODECAPSULE_PISTON_URL",
    "timezone": "CODECAPSULE_TIMEZONE",
    "schedule": "CODECAPSULE_LAB_HOURS",
    "idle_capacity": "CODECAPSULE_IDLE_CAPACITY",
}


def environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """``env`` or the process environment."""
    return os.environ if env is None else env


def missing_required(env: Mapping[str, str], given: Mapping[str, object]) -> list[str]:
    """The required variables that are neither set nor overridden by a keyword."""
    return [var for key, var in REQUIRED_SPEC_ENV.items() if key not in given and not env.get(var)]


def cloudflare_token(env: Mapping[str, str] | None = None) -> str | None:
    return environment(env).get(ENV_CLOUDFLARE_TOKEN) or None


def azure_access_token(env: Mapping[str, str] | None = None) -> str | None:
    return environment(env).get(ENV_AZURE_ACCESS_TOKEN) or None


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$CODECAPSULE_CONFIG_DIR`` or ``~/.config/codecapsule``."""
    configured = environment(env).get(ENV_CONFIG_DIR)
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "codecapsule"
