"""The distribution: its name, the notebook extra, the wheel's contents (the JupyterLab extension included)."""

from __future__ import annotations

import json
import os
import tomllib
import zipfile
from pathlib import Path

import pytest

from codecapsule._languages import LANGUAGES

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LABEXTENSION = REPO / "labextension"


def test_the_distribution_is_not_the_unrelated_codecapsule_project() -> None:
    # "codecapsule" on PyPI is another project; the import name stays codecapsule
    project = PYPROJECT["project"]
    assert project["name"] == "codecapsule-classroom"
    assert PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["codecapsule"]
    extras = project["optional-dependencies"]
    assert all(not dep.startswith("codecapsule[") for deps in extras.values() for dep in deps)


def test_the_notebook_extra_has_what_the_classroom_notebooks_import() -> None:
    extra = PYPROJECT["project"]["optional-dependencies"]["notebook"]
    notebook = {dep.split(">")[0].split("[")[0].split("<")[0] for dep in extra}
    imported = set()
    for path in sorted((REPO / "notebooks").glob("0[1-4]-*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                for line in "".join(cell["source"]).splitlines():
                    words = line.split()
                    if words[:1] in (["import"], ["from"]) and len(words) > 1:
                        imported.add(words[1].split(".")[0])
    third_party = imported - {"codecapsule", "os", "tempfile", "json", "sys", "pathlib", "textwrap", "java"}
    provided = {"duckdb"} | notebook  # duckdb is a core dependency
    assert third_party <= provided, third_party - provided
    assert {"jupyterlab", "ipykernel", "pandas", "pyarrow"} <= notebook


def test_the_labextension_knows_every_language_name_and_alias() -> None:
    table = json.loads((LABEXTENSION / "src" / "languages.json").read_text())["languages"]
    expected = {key: lang.name for lang in LANGUAGES for key in (lang.name, *lang.aliases)}
    editor = {"python": "python", "javascript": "javascript", "java": "java", "c": "c", "c++": "c++", "sql": "sql"}
    assert table == {key: editor[name] for key, name in expected.items()}


def test_the_wheel_ships_the_prebuilt_labextension_and_the_notebooks(tmp_path: Path) -> None:
    builders = pytest.importorskip("hatchling.builders.wheel")
    built = REPO / "codecapsule" / "labextension" / "package.json"
    if not built.is_file():
        if os.environ.get("CI"):
            pytest.fail("the JupyterLab extension is not built: scripts/test.sh builds it before installing")
        pytest.skip("the JupyterLab extension is not built: npm ci && npm run build in labextension/")
    (wheel,) = builders.WheelBuilder(str(REPO)).build(directory=str(tmp_path), versions=["standard"])
    names = zipfile.ZipFile(wheel).namelist()
    name = json.loads((LABEXTENSION / "package.json").read_text())["name"]
    data = f"codecapsule_classroom-{PYPROJECT['project']['version']}.data/data/share/jupyter/labextensions/{name}"
    assert f"{data}/package.json" in names
    assert any(n.startswith(f"{data}/static/remoteEntry.") for n in names)
    assert "codecapsule/_notebooks/01-getting-started.ipynb" in names
    assert not any(n.startswith("codecapsule/labextension/") for n in names)  # only under share/
