"""SQL cells: notebook parameters, saved queries as CTEs, the --register hint, course data — the pure text work,
then through a real IPython shell on the real DuckDB worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from codecapsule._errors import InvalidRequest
from codecapsule._sql_cells import bind, compose, placeholders
from codecapsule.engines._sql_messages import clean_error, register_hint
from tests.test_magics import no_codecapsule_stack, run, shell

__all__ = ["shell"]  # the fixture, shared with the magics tests

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03-sql-lab.ipynb"


@pytest.mark.parametrize(
    ("sql", "query", "names"),
    [
        ("SELECT * FROM t WHERE a > :lo AND b < $hi", "SELECT * FROM t WHERE a > $lo AND b < $hi", ("lo", "hi")),
        ("SELECT :x, :x", "SELECT $x, $x", ("x",)),
        ("SELECT x::INT, list[1:n], {'a':1}", "SELECT x::INT, list[1:n], {'a':1}", ()),
        ("SELECT ':no', \"$no\" -- :no $no\n/* :no */", "SELECT ':no', \"$no\" -- :no $no\n/* :no */", ()),
        ("SELECT $tag$ :no $tag$, (:yes)", "SELECT $tag$ :no $tag$, ($yes)", ("yes",)),
        ("SELECT 'it''s :no', :yes", "SELECT 'it''s :no', $yes", ("yes",)),
        ("SELECT $1, ?", "SELECT $1, ?", ()),
    ],
)
def test_placeholders_outside_strings_comments_casts_and_slices(sql: str, query: str, names: tuple[str, ...]) -> None:
    assert placeholders(sql) == (query, names)


def test_bind_takes_values_from_the_namespace_and_names_a_missing_one() -> None:
    assert bind("SELECT :a + $b", {"a": 1, "b": 2, "c": 3}) == ("SELECT $a + $b", {"a": 1, "b": 2})
    with pytest.raises(InvalidRequest, match="there is no variable 'b' in the notebook"):
        bind("SELECT :a + :b", {"a": 1})


def test_compose_puts_saved_queries_in_front_as_ctes() -> None:
    saved = [("top.sql", "SELECT 1 AS x;\n"), ("low.sql", "SELECT 0 AS x")]
    assert compose("SELECT * FROM top", saved) == (
        "WITH top AS (\nSELECT 1 AS x\n),\nlow AS (\nSELECT 0 AS x\n)\nSELECT * FROM top"
    )
    merged = compose("with recursive r AS (SELECT 1) SELECT * FROM r, top", saved[:1])
    assert merged == "WITH RECURSIVE top AS (\nSELECT 1 AS x\n),\nr AS (SELECT 1) SELECT * FROM r, top"
    with pytest.raises(InvalidRequest, match="must be a SQL name"):
        compose("SELECT 1", [("top-students.sql", "SELECT 1")])


def test_messages_lose_catalog_suggestions_and_gain_the_register_hint() -> None:
    error = 'Catalog Error: Table with name df does not exist!\nDid you mean "pg_depend"?\n\nLINE 1: SELECT * FROM df'
    assert "pg_depend" not in clean_error(error) and "LINE 1" in clean_error(error)
    assert clean_error('Did you mean "students"?') == 'Did you mean "students"?'
    hint = register_hint(error, {"df"})
    assert hint is not None and "--register df" in hint
    assert register_hint(error, {"other"}) is None


# -- in a real IPython shell -------------------------------------------------------------------------------


def test_parameters_come_from_the_notebook_as_values(shell: InteractiveShell) -> None:
    run(shell, "%%capsule sql\nCREATE OR REPLACE TABLE p(name TEXT, score INT);INSERT INTO p VALUES ('a', 5), ('b', 9)")
    run(shell, "cc_low = 6\ncc_name = \"a' OR '1'='1\"")
    cell = run(shell, "%%capsule sql --out cc_r\nSELECT name FROM p WHERE score > :cc_low")
    assert cell.success and shell.user_ns["cc_r"].table.rows == (("b",),)
    cell = run(shell, "%%capsule sql --out cc_r\nSELECT count(*) AS n FROM p WHERE name = $cc_name")
    assert shell.user_ns["cc_r"].table.rows == ((0,),)  # the quote stayed inside the value


def test_a_missing_parameter_is_a_one_line_usage_error(shell: InteractiveShell) -> None:
    cell = run(shell, "%%capsule sql\nSELECT :cc_nowhere")
    assert not cell.success and isinstance(cell.error, UsageError)
    assert "there is no variable 'cc_nowhere' in the notebook" in cell.stderr
    assert len(cell.stderr.strip().splitlines()) == 1
    no_codecapsule_stack(cell)


def test_saved_queries_compose_as_ctes(shell: InteractiveShell) -> None:
    run(shell, "%%capsule sql\nCREATE OR REPLACE TABLE g AS SELECT * FROM (VALUES ('ada', 9), ('bob', 5)) t(n, s)")
    saved = run(shell, "%%capsule sql --save cc_top\nSELECT n FROM g WHERE s > 8")
    assert "saved cc_top.sql" in saved.text and not saved.htmls[0].count("<table")
    cell = run(shell, "%%capsule sql --save cc_names --with cc_top\nSELECT upper(n) AS u FROM cc_top")
    cell = run(shell, "%%capsule sql --with cc_names --out cc_r\nSELECT * FROM cc_names")
    assert cell.success and shell.user_ns["cc_r"].table.rows == (("ADA",),)
    cell = run(shell, "%%capsule python --save helper.py\nx = 1")
    cell = run(shell, "%%capsule sql --with helper.py\nSELECT 1")
    assert "a python file, not a saved SQL query" in cell.stderr


def test_the_shipped_setup_cell_runs_twice_and_says_what_it_did(shell: InteractiveShell) -> None:
    import json

    cells = json.loads(NOTEBOOK.read_text())["cells"]
    setup = next(c for c in cells if "setup" in c.get("metadata", {}).get("tags", []))
    source = "".join(setup["source"])
    first, second = run(shell, source), run(shell, source)
    assert first.success and second.success and "already exists" not in second.text
    assert "created table students; inserted 5 rows" in second.text
    assert "created table enrollments; inserted 9 rows" in second.text


def test_an_unregistered_variable_gets_the_register_hint(shell: InteractiveShell) -> None:
    run(shell, "import pandas as pd\ncc_frame = pd.DataFrame({'a': [1]})")
    cell = run(shell, "%%capsule sql\nSELECT * FROM cc_frame")
    assert "--register cc_frame" in cell.text and "pg_" not in cell.text
    cell = run(shell, "%%capsule sql\nSELECT * FROM cc_not_a_variable")
    assert "--register" not in cell.text


def test_course_data_by_option_and_by_config(shell: InteractiveShell, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "grades.csv").write_text("n,g\nada,9\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.csv").write_text("y\n1\n")
    run(shell, "%%capsule sql\nCREATE OR REPLACE TABLE kept AS SELECT 3 AS k")
    query = "%%capsule sql --out cc_r\nSELECT * FROM read_csv('data/grades.csv')"
    assert run(shell, query).success and shell.user_ns["cc_r"].verdict == "runtime_error"
    cell = run(shell, "%%capsule sql --data data --out cc_r\nSELECT * FROM read_csv('data/grades.csv')")
    assert cell.success and shell.user_ns["cc_r"].table.rows == (("ada", 9),)
    run(shell, "%%capsule sql --out cc_r\nSELECT k FROM kept")
    assert shell.user_ns["cc_r"].table.rows == ((3,),)  # the session survived the new allowlist
    run(shell, "%%capsule sql --out cc_r\nSELECT * FROM read_csv('other/x.csv')")
    assert shell.user_ns["cc_r"].verdict == "runtime_error"
    run(shell, '%config Capsule.sql_data = ["data", "other"]')
    run(shell, "%%capsule sql --out cc_r\nSELECT * FROM read_csv('other/x.csv')")
    assert shell.user_ns["cc_r"].table.rows == ((1,),)
    bad = run(shell, "%%capsule sql --data nowhere\nSELECT 1")
    assert isinstance(bad.error, UsageError) and "does not exist" in bad.stderr
