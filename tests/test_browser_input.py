"""End to end: a ``%%capsule python`` cell whose program calls ``input()``, in a real JupyterLab driven by
headless Chromium — the student types the answer into the notebook's input box (``.jp-Stdin-input``).

Needs what tests/test_browser_cells.py needs (Debian's chromium, the built lab extension) and a local engine
that takes interactive input.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codecapsule._live_display import END_OF_INPUT
from tests.jupyterlab import ARTIFACTS, CHROMIUM, MS, Lab, chromium_page, run_cell, running_lab, write_notebook
from tests.test_browser_cells import BUILT, NAME

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

INPUT_CELL = """\
%%capsule python --engine local
print("what is your name?", flush=True)
name = input()
print("hello", name)"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    pytest.importorskip("jupyterlab")
    pytest.importorskip("playwright.sync_api")
    if not (BUILT / "package.json").is_file():
        pytest.skip("the JupyterLab extension is not built: npm ci && npm run build in labextension/")
    launcher = (sys.executable, "-m", "codecapsule.cli", "lab", str(tmp_path / "root"), "--")
    (tmp_path / "root").mkdir()
    write_notebook(tmp_path / "root" / "input.ipynb", ("%load_ext codecapsule", INPUT_CELL))
    with running_lab(tmp_path, launcher=launcher, labextensions={NAME: BUILT}, set_root=False) as lab:
        yield lab


def test_browser_the_student_types_the_answer_into_the_input_box(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium_page(tmp_path, lab) as page:
        page.goto(lab.url("/lab/tree/input.ipynb"))
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=120 * MS)
        run_cell(page, 0)
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60 * MS)
        run_cell(page, 1)
        cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
        box = cell.locator(".jp-Stdin-input")
        expect(box).to_be_visible(timeout=120 * MS)
        # the program's own line is live above the box; the prompt says how to end the input
        expect(cell.locator(".jp-OutputArea")).to_contain_text("what is your name?")
        expect(cell.locator(".jp-Stdin-prompt")).to_contain_text(END_OF_INPUT)
        cell.screenshot(path=str(ARTIFACTS / "capsule-input-box.png"))
        box.fill("Ada")
        box.press("Enter")
        output = cell.locator(".jp-OutputArea")
        expect(output).to_contain_text("hello Ada", timeout=120 * MS)
        expect(output).to_contain_text("ok")
        expect(cell.locator(".jp-Stdin-input")).to_have_count(0)
        expect(output).not_to_contain_text("Traceback")
