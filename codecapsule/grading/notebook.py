"""``%%capsule LANG --tests lab1.yaml``: grade the cell and show the per-test table under it.

Hidden tests show only passed/failed and their points (the renderer never shows their input or output).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import CodeCapsuleError, InvalidRequest, InvalidTestSuite
from .load import load_tests
from .render import grade_html, grade_text
from .results import Grade
from .runner import grade_job

if TYPE_CHECKING:
    from ..magics import Capsule, CellOptions


def grade_cell(magics: Capsule, source: str, opts: CellOptions, *, exclude: str | None) -> Grade:
    """Grade ``source`` (the cell) against ``opts.tests``; display the Grade; keep it in ``--out VAR``."""
    from IPython.core.error import UsageError

    from ..magics import MagicFailure, _display

    assert opts.tests is not None
    try:
        suite = load_tests(opts.tests)
    except InvalidTestSuite as exc:
        raise MagicFailure(str(exc), title="InvalidTestSuite") from None
    job = magics._job(source, opts, exclude)
    if suite.language is not None and suite.language != job.language:
        raise UsageError(f"{opts.tests} is a {suite.language} exercise, but this cell is {job.language}.")
    try:
        client = magics._sql_client(opts) if job.lang.sql else magics._client()
        grade = grade_job(client, job, suite, engine=opts.engine or magics.engine)  # type: ignore[arg-type]
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None
    except CodeCapsuleError as exc:
        raise MagicFailure(str(exc), title=type(exc).__name__) from None
    options = {
        "main_file": job.files[0].name,
        "line_offset": 1,  # the cell's line 1 is the %%capsule line
        "other_files": [f.name for f in job.files[1:]],
    }
    name = suite.name
    _display(
        {"text/html": grade_html(grade, name=name, **options), "text/plain": grade_text(grade, name=name, **options)}
    )
    if opts.out is not None and magics.shell is not None:
        magics.shell.user_ns[opts.out] = grade
    if not grade.passed and (opts.raise_on_failure or magics.raise_on_failure):
        raise MagicFailure(f"{len(grade.results) - grade.tests_passed} of {len(grade.results)} tests did not pass.")
    return grade
