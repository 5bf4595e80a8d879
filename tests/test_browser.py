"""End to end: the scaling panel in a real JupyterLab, driven by headless Chromium.

The test starts JupyterLab on 127.0.0.1 (a free port, a random token, its own temporary HOME and JUPYTER_* dirs,
quiet and offline), writes a notebook whose first cell starts the fake ARM / Cloudflare / Piston servers *inside
the kernel* and deploys a Cluster on them, opens it in Debian's Chromium through Playwright (no browser
download), moves the capacity slider, clicks Apply, and checks that the panel and the fake ARM (read back by a
cell that prints it) both show the new capacity. Screenshots of the panel in the light and the dark theme go to
``artifacts/`` (git-ignored). See shared/reference/browser-e2e.md for why each flag is there.

Run: ``pytest -k browser`` (needs ``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium); Playwright's own browser download is not used"),
]

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
MS = 1000  # Playwright timeouts are in milliseconds; these are upper bounds, not timing assertions

# Cell 1: everything the kernel needs, started inside the kernel so a later cell can read the fakes' state.
SETUP_CELL = """\
from tests.fakes.arm import FakeARM
from tests.fakes.cloudflare import FakeCloudflare
from codecapsule import Cluster, ClusterSpec

arm = FakeARM().start()
cf = FakeCloudflare(zone_name="example.edu").start()
try:  # a Piston-compatible server, so the panel shows runtimes and a round trip
    from tests.fakes.piston import PistonTestServer
    piston_url = PistonTestServer().start().url
except ImportError:  # no Piston test server in this checkout: the panel shows Piston as unreachable
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        piston_url = f"http://127.0.0.1:{s.getsockname()[1]}"

spec = ClusterSpec(
    domain="example.edu", subscription_id=arm.subscription_id, cloudflare_account_id=cf.account_id,
    azure_endpoint=arm.endpoint, azure_ca_bundle=arm.ca_bundle, cloudflare_endpoint=cf.endpoint,
    poll_interval=0, piston_url=piston_url,
)
cluster = Cluster(spec, credential=arm.credential, cloudflare_token=cf.api_token)
cluster.deploy(progress=False)
cf.connect(cf.live_tunnels()[0]["id"], colo="AMS", origin_ip="10.0.1.4")
cf.connect(cf.live_tunnels()[0]["id"], colo="FRA", origin_ip="10.0.1.5")
print("fakes ready")
"""
PANEL_CELL = "panel = cluster.panel()\npanel"
READBACK_CELL = """\
panel.wait_idle(60)
vmss = arm.find("virtualMachineScaleSets", "codecapsule-piston")[0]
print(f"FAKE_CAPACITY={vmss['sku']['capacity']} PANEL_CAPACITY={panel.status.capacity}")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Lab:
    base_url: str
    token: str
    root: Path
    process: subprocess.Popen[str]
    output: list[str]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}?token={self.token}"


def _write_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (codecapsule)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (SETUP_CELL, PANEL_CELL, READBACK_CELL)]
    nbformat.write(nb, str(path))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with its own directories and a kernelspec running this interpreter."""
    pytest.importorskip("jupyterlab")
    httpx = pytest.importorskip("httpx")
    root = tmp_path / "root"
    home = tmp_path / "home"
    dirs = {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": tmp_path / "jupyter-config",
        "JUPYTER_DATA_DIR": tmp_path / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": tmp_path / "jupyter-runtime",
        "JUPYTERLAB_SETTINGS_DIR": tmp_path / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": tmp_path / "lab-workspaces",
        "IPYTHONDIR": tmp_path / "ipython",
        "JUPYTER_PATH": tmp_path / "jupyter-path",
        "CODECAPSULE_CONFIG_DIR": tmp_path / "codecapsule-config",
    }
    for d in (root, *dirs.values()):
        d.mkdir(parents=True, exist_ok=True)
    # The kernel must be this virtualenv's Python (the venv's own kernelspec says just "python").
    kernel_dir = dirs["JUPYTER_PATH"] / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (codecapsule)", "language": "python",
    }))
    # No news / update prompt.
    notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    _write_notebook(root / "panel.ipynb")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON", "CODECAPSULE_"))}
    for name in ("CLOUDFLARE_API_TOKEN", "AZURE_SUBSCRIPTION_ID", "CLOUDFLARE_ACCOUNT_ID"):
        env.pop(name, None)
    env.update({k: str(v) for k, v in dirs.items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"

    port, token = _free_port(), secrets.token_hex(24)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly", "--LanguageServerManager.autodetect=False",
    ]
    process = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    output: list[str] = []
    listening = threading.Event()

    def pump() -> None:  # keep the pipe drained; notice when the server says where it listens
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if f"127.0.0.1:{port}/" in line:
                listening.set()
        listening.set()  # the process ended: stop waiting

    threading.Thread(target=pump, name="jupyterlab-output", daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert listening.wait(120) and process.poll() is None, "JupyterLab did not start:\n" + "".join(output)
        with httpx.Client(trust_env=False, timeout=30) as client:
            assert client.get(f"{base}/api/status", params={"token": token}).status_code == 200
        yield Lab(base, token, root, process, output)
    finally:
        try:
            with httpx.Client(trust_env=False, timeout=30) as client:
                client.post(f"{base}/api/shutdown", params={"token": token})  # stops the kernels too
            process.wait(timeout=30)
        except Exception:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _browser_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "browser-home"
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        path = home / name.lower()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(path)
    return env


def _run_cell(page: object, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)  # type: ignore[attr-defined]
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")  # type: ignore[attr-defined]


def test_browser_scaling_panel_scales_the_fake_cluster(lab: Lab, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    expect = playwright.expect
    ARTIFACTS.mkdir(exist_ok=True)
    started = time.monotonic()

    with playwright.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, env=_browser_env(tmp_path), viewport={"width": 1280, "height": 800},
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            page.goto(lab.url("/lab/tree/panel.ipynb"))
            expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=120 * MS)

            _run_cell(page, 0)
            cells = page.locator(".jp-Notebook .jp-Cell")
            expect(cells.nth(0).locator(".jp-OutputArea-output")).to_contain_text("fakes ready", timeout=180 * MS)

            _run_cell(page, 1)
            panel = page.locator(".cc-panel")
            expect(panel).to_be_visible(timeout=60 * MS)
            now = panel.locator(".cc-capacity-now")
            expect(now).to_contain_text("Now: 1 instance", timeout=60 * MS)
            refresh = panel.locator("button.cc-refresh")
            expect(refresh).to_be_enabled(timeout=60 * MS)  # the first status read has finished
            expect(panel.locator(".cc-tunnel")).to_contain_text("healthy")

            # move the capacity slider with the keyboard, 1 -> 3
            handle = panel.locator(".cc-capacity .noUi-handle[role=slider]")
            handle.focus()
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            expect(handle).to_have_attribute("aria-valuenow", "3.0")
            expect(panel.locator(".cc-cost")).to_contain_text("3 VMs")  # the estimate follows the slider

            panel.locator("button.cc-apply-capacity").click()
            expect(now).to_contain_text("Now: 3 instances", timeout=60 * MS)
            expect(refresh).to_be_enabled(timeout=60 * MS)
            expect(panel.locator(".cc-log")).to_contain_text("Capacity set to 3 instances (was 1).")
            expect(panel.locator(".cc-instances tbody tr")).to_have_count(3)

            # what the fake ARM holds, read by the kernel
            _run_cell(page, 2)
            expect(cells.nth(2).locator(".jp-OutputArea-output")).to_contain_text(
                "FAKE_CAPACITY=3 PANEL_CAPACITY=3", timeout=60 * MS
            )

            panel.evaluate("el => el.scrollIntoView({block: 'start'})")
            panel.screenshot(path=str(ARTIFACTS / "scaling-panel-light.png"))
            page.screenshot(path=str(ARTIFACTS / "scaling-panel-lab-light.png"))

            # the dark theme: Settings → Theme → JupyterLab Dark
            page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
            page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
            page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
            expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30 * MS)
            expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30 * MS)  # theme-change splash
            expect(panel).to_be_visible()
            panel.evaluate("el => el.scrollIntoView({block: 'start'})")
            panel.screenshot(path=str(ARTIFACTS / "scaling-panel-dark.png"))
            page.screenshot(path=str(ARTIFACTS / "scaling-panel-lab-dark.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"))
            sys.stderr.write("JupyterLab output:\n" + "".join(lab.output[-80:]))
            raise
        finally:
            context.close()
    sys.stderr.write(f"browser test body took {time.monotonic() - started:.1f} s\n")
