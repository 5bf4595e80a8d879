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

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jupyterlab import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MS, Lab, running_lab, write_notebook
from tests.jupyterlab import browser_env as _browser_env
from tests.jupyterlab import run_cell as _run_cell

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium); Playwright's own browser download is not used"),
]

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


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1 with its own directories and a kernelspec running this interpreter."""
    pytest.importorskip("jupyterlab")
    pytest.importorskip("httpx")
    (tmp_path / "root").mkdir()
    write_notebook(tmp_path / "root" / "panel.ipynb", (SETUP_CELL, PANEL_CELL, READBACK_CELL))
    with running_lab(tmp_path) as running:
        yield running


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
            expect(panel.locator(".cc-token")).to_contain_text("expires")  # the Access token's lifetime
            expect(panel.locator(".cc-schedule")).to_contain_text("No lab hours")

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
