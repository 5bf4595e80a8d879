"""End to end: %%capsule cells in a real JupyterLab (started by `codecapsule lab`), driven by headless Chromium.

* highlighting: the editor's tokens in a ``%%capsule java`` cell are Java's (a ``//`` comment is a comment, coloured
  with the theme's comment colour; ``public`` is a keyword), a ``%%capsule c`` cell's ``#include`` is C's
  preprocessor line, and changing the first line to ``%%capsule python`` re-highlights the cell as Python;
* the student displays: verdict banner first, long output folded with a run of identical lines collapsed, the
  wrong-answer diff as "expected" vs "your output" with the differing characters marked.

Screenshots go to ``artifacts/`` (git-ignored). Run: ``pytest -k browser`` (needs ``apt-get install -y chromium``
and the built extension: ``npm ci && npm run build`` in labextension/, which scripts/test.sh does).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jupyterlab import (
    ARTIFACTS,
    CHROMIUM,
    MS,
    REPO,
    Lab,
    chromium_page,
    run_cell,
    running_lab,
    write_notebook,
)

BUILT = REPO / "codecapsule" / "labextension"
NAME = json.loads((REPO / "labextension" / "package.json").read_text())["name"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                       "(apt-get install -y chromium); Playwright's own browser download is not used"),
]

JAVA_CELL = """\
%%capsule java
// prints the answer
public class Main {
    public static void main(String[] args) {
        System.out.println("forty-two");
    }
}"""
C_CELL = """\
%%capsule c
#include <stdio.h>
int main(void) { return 0; }"""
FOLD_CELL = """\
%%capsule python
for i in range(200):
    print("same line")
print("done")"""
DIFF_CELL = """\
%%capsule python --expect "1\\n2\\n3"
print(1)
print(20)
print(3)"""
CELLS = ("%load_ext codecapsule", JAVA_CELL, C_CELL, FOLD_CELL, DIFF_CELL)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    pytest.importorskip("jupyterlab")
    pytest.importorskip("playwright.sync_api")
    if not (BUILT / "package.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the JupyterLab extension is not built ({BUILT}): scripts/test.sh builds it")
        pytest.skip("the JupyterLab extension is not built: npm ci && npm run build in labextension/")
    # started the way the docs say: codecapsule lab FOLDER -- JUPYTERLAB OPTIONS
    launcher = (sys.executable, "-m", "codecapsule.cli", "lab", str(tmp_path / "root"), "--")
    (tmp_path / "root").mkdir()
    write_notebook(tmp_path / "root" / "cells.ipynb", CELLS)
    with running_lab(tmp_path, launcher=launcher, labextensions={NAME: BUILT}, set_root=False) as lab:
        yield lab


def _editor(page: object, index: int) -> object:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")  # type: ignore[attr-defined]


def test_browser_capsule_cells_are_highlighted_as_their_language(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    # the classroom notebooks were put next to ours by `codecapsule lab`
    assert (lab.root / "01-getting-started.ipynb").is_file()
    with chromium_page(tmp_path, lab) as page:
        page.goto(lab.url("/lab/tree/cells.ipynb"))
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=120 * MS)

        java = _editor(page, 1)
        comment = java.locator(".tok-comment")
        expect(comment).to_have_text("// prints the answer", timeout=30 * MS)
        expect(java.locator(".tok-keyword", has_text="public").first).to_be_visible()
        expect(java.locator(".tok-keyword", has_text="class")).to_have_count(1)
        expect(java.locator(".cc-capsule-magic")).to_have_text("%%capsule java")
        # coloured by the theme as a comment, not as Python's floor-division operator
        colour = comment.evaluate("el => getComputedStyle(el).color")
        theme_comment = page.evaluate(
            "() => { const s = document.createElement('span');"
            " s.style.color = 'var(--jp-mirror-editor-comment-color)'; document.body.appendChild(s);"
            " const c = getComputedStyle(s).color; s.remove(); return c; }"
        )
        assert colour == theme_comment, (colour, theme_comment)

        c = _editor(page, 2)
        expect(c.locator(".tok-meta", has_text="#include")).to_have_count(1, timeout=30 * MS)
        expect(c.locator(".tok-comment")).to_have_count(0)
        page.locator(".jp-Notebook .jp-Cell").nth(1).scroll_into_view_if_needed()
        page.locator(".jp-Notebook .jp-Cell").nth(1).screenshot(path=str(ARTIFACTS / "capsule-java-cell.png"))

        # the first line decides: as Python, "#include <stdio.h>" is a comment
        c.locator(".cm-line").first.click()
        page.keyboard.press("End")
        for _ in range(len("c")):
            page.keyboard.press("Backspace")
        page.keyboard.type("python")
        expect(c.locator(".cc-capsule-magic")).to_have_text("%%capsule python")
        expect(c.locator(".tok-comment")).to_have_text("#include <stdio.h>", timeout=30 * MS)
        expect(c.locator(".tok-meta")).to_have_count(0)


def test_browser_long_output_is_folded_and_the_diff_is_aligned(lab: Lab, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with chromium_page(tmp_path, lab, height=1000) as page:
        page.goto(lab.url("/lab/tree/cells.ipynb"))
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=120 * MS)
        cells = page.locator(".jp-Notebook .jp-Cell")
        run_cell(page, 0)  # %load_ext codecapsule
        expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60 * MS)

        run_cell(page, 3)
        folded = cells.nth(3).locator(".codecapsule-result")
        expect(folded).to_be_visible(timeout=60 * MS)
        # the verdict first, then four of the 200 identical lines and one line for the rest
        first = folded.locator(":scope > div").first
        expect(first).to_have_class("cc-status")
        expect(first).to_contain_text("ok")
        stdout = folded.locator("pre.cc-stdout")
        expect(stdout).to_contain_text("… 196 more identical lines")
        assert stdout.inner_text().count("same line") == 4
        expect(stdout).to_contain_text("done")
        expect(folded.locator("details")).to_have_count(0)
        folded.scroll_into_view_if_needed()
        folded.screenshot(path=str(ARTIFACTS / "capsule-folded-output.png"))

        run_cell(page, 4)
        result = cells.nth(4).locator(".codecapsule-result")
        expect(result).to_have_attribute("data-verdict", "wrong_answer", timeout=60 * MS)
        table = result.locator("table.cc-diff")
        expect(table.locator("th")).to_have_text(["line", "expected", "your output"])
        expect(table.locator("tbody tr")).to_have_count(3)
        differs = table.locator("tr.cc-differs")
        expect(differs).to_have_count(1)
        expect(differs.locator(".cc-expected")).to_have_text("2")
        expect(differs.locator(".cc-actual")).to_have_text("20")
        marked = differs.locator(".cc-actual .cc-changed")
        expect(marked).to_have_text("0")  # only the differing character
        background = marked.evaluate("el => getComputedStyle(el).backgroundColor")
        assert background not in ("rgba(0, 0, 0, 0)", "transparent"), background
        result.scroll_into_view_if_needed()
        result.screenshot(path=str(ARTIFACTS / "capsule-diff.png"))
        page.screenshot(path=str(ARTIFACTS / "capsule-cells-lab.png"))

        # the dark theme: the same displays stay readable (JupyterLab's colour variables, translucent fallbacks)
        page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
        page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
        page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30 * MS)
        expect(page.locator("#jupyterlab-splash")).to_have_count(0, timeout=30 * MS)
        expect(result).to_be_visible()
        text_colour = differs.locator(".cc-actual").evaluate("el => getComputedStyle(el).color")
        assert text_colour != "rgb(0, 0, 0)", text_colour  # the theme's light text, not black on dark
        result.scroll_into_view_if_needed()
        result.screenshot(path=str(ARTIFACTS / "capsule-diff-dark.png"))
