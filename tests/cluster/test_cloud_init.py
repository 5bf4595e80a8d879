"""The cloud-init file the VMs boot with: valid for the real ``cloud-init schema``, safe, complete, shipped."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from codecapsule._errors import InvalidRequest
from codecapsule.cluster.cloud_init import custom_data_sha256, load_template, render_cloud_init, runtimes_tag
from codecapsule.cluster.spec import ClusterSpec

TOKEN = "eyJhIjoiMTIzNDUiLCJ0IjoiYWJjZGVmIiwicyI6IlNFQ1JFVFNFQ1JFVCJ9"
REPO = Path(__file__).resolve().parents[2]
CLOUD_INIT = shutil.which("cloud-init")


def spec(**changes: object) -> ClusterSpec:
    base = ClusterSpec(
        domain="example.edu",
        subscription_id="00000000-0000-0000-0000-000000000000",
        cloudflare_account_id="acc123",
    )
    return base.with_(**changes)


def write_files(text: str) -> dict[str, dict[str, str]]:
    doc = yaml.safe_load(text)
    return {entry["path"]: entry for entry in doc["write_files"]}


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    assert CLOUD_INIT is not None
    return subprocess.run([CLOUD_INIT, "schema", "-c", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CLOUD_INIT is None, reason="the `cloud-init` binary is not installed (apt-get install cloud-init)")
def test_rendered_file_passes_the_real_cloud_init_schema(tmp_path: Path) -> None:
    good = tmp_path / "user-data.yaml"
    good.write_text(render_cloud_init(spec(), TOKEN))
    result = schema_check(good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout

    # The checker really checks: the same file with a wrongly typed key is refused.
    bad = tmp_path / "broken.yaml"
    bad.write_text(good.read_text().replace("package_update: true", "package_update: [yes, please]"))
    assert schema_check(bad).returncode != 0


def test_piston_listens_on_loopback_only_with_the_spec_limits() -> None:
    limits = (
        ("OUTPUT_MAX_SIZE", "131072"),
        ("LIMIT_OVERRIDES", '{"java": {"run_memory_limit": 1000000000}}'),
    )
    text = render_cloud_init(spec(piston_limits=limits), TOKEN)
    start = write_files(text)["/usr/local/sbin/codecapsule-start-piston"]["content"]
    assert "-p 127.0.0.1:2000:2000" in start
    assert start.count("-p ") == 1  # no other published port
    for flag in (
        "--privileged",
        "--restart always",
        "-v piston-packages:/piston/packages",
        "--tmpfs /tmp:exec",
    ):
        assert flag in start
    assert "-e PISTON_OUTPUT_MAX_SIZE=131072" in start
    # The JSON value is shell-quoted as one word.
    assert """-e 'PISTON_LIMIT_OVERRIDES={"java": {"run_memory_limit": 1000000000}}'""" in start
    assert "PISTON_IMAGE=ghcr.io/engineer-man/piston" in start


def test_default_limits_raise_the_output_cap() -> None:
    start = write_files(render_cloud_init(spec(), TOKEN))["/usr/local/sbin/codecapsule-start-piston"]["content"]
    for name, value in spec().piston_limits:
        assert f"-e PISTON_{name}={value}" in start


def test_every_runtime_is_installed_through_the_packages_api() -> None:
    runtimes = (("python", "3.12.0"), ("rust", "1.68.2"), ("gcc", "10.2.0"))
    files = write_files(render_cloud_init(spec(runtimes=runtimes), TOKEN))
    listed = [
        line.split()
        for line in files["/etc/codecapsule/runtimes"]["content"].splitlines()
        if line and not line.startswith("#")
    ]
    assert listed == [["python", "3.12.0"], ["rust", "1.68.2"], ["gcc", "10.2.0"]]
    installer = files["/usr/local/sbin/codecapsule-install-runtimes"]["content"]
    assert "/api/v2/packages" in installer and "127.0.0.1:2000" in installer
    doc = yaml.safe_load(render_cloud_init(spec(runtimes=runtimes), TOKEN))
    assert ["/usr/local/sbin/codecapsule-install-runtimes"] in doc["runcmd"]


def test_token_appears_only_in_the_root_only_env_file() -> None:
    text = render_cloud_init(spec(), TOKEN)
    assert text.count(TOKEN) == 1
    holders = {path: e for path, e in write_files(text).items() if TOKEN in e["content"]}
    assert list(holders) == ["/etc/codecapsule/cloudflared.env"]
    entry = holders["/etc/codecapsule/cloudflared.env"]
    assert entry["permissions"] == "0600" and entry["owner"] == "root:root"
    assert entry["content"].strip() == f"TUNNEL_TOKEN={TOKEN}"
    unit = write_files(text)["/etc/systemd/system/cloudflared.service"]["content"]
    assert "EnvironmentFile=/etc/codecapsule/cloudflared.env" in unit
    assert "--token" not in unit


def test_health_timer_runs_every_minute_and_logs() -> None:
    text = render_cloud_init(spec(), TOKEN)
    files = write_files(text)
    assert "OnUnitActiveSec=1min" in files["/etc/systemd/system/codecapsule-health.timer"]["content"]
    health = files["/usr/local/sbin/codecapsule-health"]["content"]
    assert "/var/log/codecapsule-health.log" in health
    assert "http://127.0.0.1:2000/" in health
    assert "systemctl restart cloudflared" in health and "docker restart piston" in health
    assert ["systemctl", "enable", "--now", "codecapsule-health.timer"] in yaml.safe_load(text)["runcmd"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_every_script_is_valid_bash(tmp_path: Path) -> None:
    for path, entry in write_files(render_cloud_init(spec(), TOKEN)).items():
        if entry["content"].startswith("#!/bin/bash"):
            script = tmp_path / Path(path).name
            script.write_text(entry["content"])
            result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert result.returncode == 0, f"{path}: {result.stderr}"


@pytest.mark.parametrize(
    "changes",
    [
        {"runtimes": (("python; rm -rf /", "3.12.0"),)},
        {"runtimes": (("python", "3.12.0\nruncmd: [reboot]"),)},
        {"runtimes": (("python", "*"),)},
        {"piston_limits": (("OUTPUT_MAX_SIZE", "1\n2"),)},
        {"piston_limits": (("output max", "1"),)},
        {"piston_limits": (("PISTON_OUTPUT_MAX_SIZE", "1"),)},
        {"piston_limits": (("BIND_ADDRESS", "127.0.0.1:2000"),)},
        {"piston_image": "ghcr.io/engineer-man/piston; curl evil"},
    ],
)
def test_unsafe_spec_values_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        render_cloud_init(spec(**changes), TOKEN)


def test_a_malformed_token_is_refused_without_echoing_it() -> None:
    weird = "abc'def\nTUNNEL_TOKEN=xyz-secret-value"
    with pytest.raises(InvalidRequest) as info:
        render_cloud_init(spec(), weird)
    assert "secret-value" not in str(info.value)


def test_hash_and_runtime_tag_helpers() -> None:
    text = render_cloud_init(spec(), TOKEN)
    assert custom_data_sha256(text) == custom_data_sha256(render_cloud_init(spec(), TOKEN))
    assert custom_data_sha256(text) != custom_data_sha256(render_cloud_init(spec(capacity=2), TOKEN + "x"))
    assert runtimes_tag((("node", "20.11.1"), ("gcc", "10.2.0"))) == "gcc=10.2.0,node=20.11.1"


def test_template_ships_inside_the_wheel(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("codecapsule_classroom-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "codecapsule/_cloud_init/codecapsule.yaml.tmpl" in archive.namelist()
        archive.extractall(tmp_path / "site")
    # Import the unpacked wheel (not the source checkout) and render from its packaged template.
    probe = (
        "import codecapsule, codecapsule.cluster.cloud_init as c; "
        "print(codecapsule.__file__); print(c.load_template().splitlines()[0])"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    module_file, first_line = run.stdout.splitlines()
    assert module_file.startswith(str(tmp_path / "site"))
    assert first_line == "#cloud-config"
    assert load_template() == (tmp_path / "site" / "codecapsule" / "_cloud_init" / "codecapsule.yaml.tmpl").read_text()


def test_every_apt_call_waits_for_the_dpkg_lock() -> None:
    """First boot's unattended-upgrades holds the dpkg lock: apt must wait for it, not fail."""
    text = render_cloud_init(spec(), TOKEN)
    doc = yaml.safe_load(text)
    # cloud-init's own package install reads this apt.conf (written before the packages module runs)
    assert 'DPkg::Lock::Timeout "600";' in doc["apt"]["conf"]
    scripts = "\n".join(entry["content"] for entry in doc["write_files"])
    calls = [line for line in scripts.splitlines() if re.search(r"\bapt-get\s", line)]
    assert calls, "the scripts install cloudflared with apt-get"
    assert all("-o DPkg::Lock::Timeout=600" in line for line in calls), calls
