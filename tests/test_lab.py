"""``codecapsule lab``: the classroom notebooks put in a folder (never overwriting a student's copy) and the
command that opens JupyterLab on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from codecapsule._lab import lab_command, prepare_folder, shipped_notebooks


def test_the_checkout_opens_its_own_notebooks() -> None:
    folder, checkout = shipped_notebooks()
    assert checkout and (folder / "01-getting-started.ipynb").is_file()
    assert prepare_folder(None) == folder


def test_notebooks_are_copied_and_a_students_edits_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "class"
    target.mkdir()
    (target / "01-getting-started.ipynb").write_text("my edits")
    assert prepare_folder(str(target)) == target.resolve()
    assert (target / "01-getting-started.ipynb").read_text() == "my edits"
    shipped = sorted(p.name for p in shipped_notebooks()[0].glob("*.ipynb"))
    assert sorted(p.name for p in target.glob("*.ipynb")) == shipped


def test_a_folder_that_cannot_be_made_is_one_error(tmp_path: Path) -> None:
    from codecapsule import ConfigurationError

    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="cannot put the classroom notebooks in"):
        prepare_folder(str(tmp_path / "file" / "sub"))


def test_the_command_runs_jupyterlab_in_this_interpreter(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")
    command = lab_command(tmp_path, ["--no-browser"])
    root = ["--allow-root"] if os.geteuid() == 0 else []
    assert command == [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={tmp_path}", "--no-browser", *root]
