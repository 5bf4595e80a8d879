"""A real JupyterLab on 127.0.0.1 and Debian's headless Chromium, for the browser tests.

JupyterLab gets a free port, a random token and its own HOME / JUPYTER_* / IPYTHON directories under the test's
temporary folder; it is quiet and offline (no news, no update check, no language-server probing). The kernel is
this interpreter with the checkout on PYTHONPATH. See shared/reference/browser-e2e.md for why each flag is there.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
MS = 1000  # Playwright timeouts are in milliseconds; these are upper bounds, not timing assertions
LAB_OPTIONS = (
    "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
    "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly", "--LanguageServerManager.autodetect=False",
)


@dataclass
class Lab:
    base_url: str
    token: str
    root: Path
    process: subprocess.Popen[str]
    output: list[str]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}?token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_notebook(path: Path, cells: Sequence[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (codecapsule)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


@contextmanager
def running_lab(
    tmp_path: Path,
    *,
    launcher: Sequence[str] = (sys.executable, "-m", "jupyterlab"),
    labextensions: Mapping[str, Path] | None = None,
    set_root: bool = True,
) -> Iterator[Lab]:
    """JupyterLab started with ``launcher`` + the quiet options (+ ``--ServerApp.root_dir`` unless the launcher
    sets it); ``labextensions`` (name → built folder) are made visible through its own data directory."""
    import httpx

    root = tmp_path / "root"
    dirs = {
        "HOME": tmp_path / "home",
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
    for name, built in (labextensions or {}).items():
        target = dirs["JUPYTER_DATA_DIR"] / "labextensions" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(built, target_is_directory=True)
    # No news / update prompt.
    notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON", "CODECAPSULE_"))}
    if "CODECAPSULE_CACHE_DIR" in os.environ:  # the session's engine cache, never the machine's (see conftest)
        env["CODECAPSULE_CACHE_DIR"] = os.environ["CODECAPSULE_CACHE_DIR"]
    for name in ("CLOUDFLARE_API_TOKEN", "AZURE_SUBSCRIPTION_ID", "CLOUDFLARE_ACCOUNT_ID"):
        env.pop(name, None)
    env.update({k: str(v) for k, v in dirs.items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"

    port, token = free_port(), secrets.token_hex(24)
    cmd = [*launcher, *LAB_OPTIONS, f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"]
    if set_root:
        cmd.append(f"--ServerApp.root_dir={root}")
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


def browser_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "browser-home"
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        path = home / name.lower()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(path)
    return env


@contextmanager
def chromium_page(tmp_path: Path, lab: Lab, *, width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A Playwright page in headless Chromium; on failure a screenshot and JupyterLab's last output are kept."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, env=browser_env(tmp_path), viewport={"width": width, "height": height},
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            yield page
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"))
            sys.stderr.write("JupyterLab output:\n" + "".join(lab.output[-80:]))
            raise
        finally:
            context.close()


def run_cell(page: Any, index: int) -> None:
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
