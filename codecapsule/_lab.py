"""``codecapsule lab``: open JupyterLab on the classroom notebooks (01-getting-started ... 05-admin).

In a clone of the repository the notebooks are opened where they are (``notebooks/``). From an installed wheel
they are copied into a folder of the user's (``./codecapsule-notebooks`` unless told otherwise) — only the ones
not there yet, so a student's edits are never overwritten — and JupyterLab opens that folder. JupyterLab runs in
this interpreter, so the kernel has CodeCapsule and the %%capsule highlighting extension the wheel installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from ._errors import ConfigurationError

__all__ = ["DEFAULT_FOLDER", "lab_command", "prepare_folder", "shipped_notebooks"]

DEFAULT_FOLDER = "codecapsule-notebooks"
_CHECKOUT = Path(__file__).resolve().parents[1] / "notebooks"


def shipped_notebooks() -> tuple[Path, bool]:
    """(the folder holding the classroom notebooks, whether it is a repository checkout's own folder)."""
    if (_CHECKOUT / "01-getting-started.ipynb").is_file():
        return _CHECKOUT, True
    packaged = Path(str(resources.files("codecapsule").joinpath("_notebooks")))
    if packaged.is_dir():
        return packaged, False
    raise ConfigurationError(
        "the classroom notebooks are missing from this installation (codecapsule/_notebooks/); reinstall "
        "codecapsule-classroom."
    )


def prepare_folder(folder: str | None) -> Path:
    """The folder JupyterLab opens, holding every classroom notebook (copied there when missing)."""
    source, checkout = shipped_notebooks()
    if folder is None and checkout:
        return source
    target = Path(folder if folder is not None else DEFAULT_FOLDER).expanduser().resolve()
    if target == source.resolve():
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        for notebook in sorted(source.glob("*.ipynb")):
            if not (target / notebook.name).exists():
                shutil.copyfile(notebook, target / notebook.name)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot put the classroom notebooks in {str(target)!r}: {exc.strerror}. Give another folder: "
            "codecapsule lab FOLDER."
        ) from None
    return target


def lab_command(folder: Path, lab_args: list[str]) -> list[str]:
    """The command that starts JupyterLab on ``folder`` in this interpreter (extra options passed through)."""
    if importlib.util.find_spec("jupyterlab") is None:
        raise ConfigurationError(
            "`codecapsule lab` needs JupyterLab: pip install 'codecapsule-classroom[notebook]' (then run it again)."
        )
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", *lab_args]
    if os.geteuid() == 0 and "--allow-root" not in lab_args:
        command.append("--allow-root")  # a container's root user: JupyterLab refuses to start without it
    return command
