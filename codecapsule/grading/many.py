"""``grade_many()``: grade a folder of submissions, several students at a time, writing the gradebook as each
student finishes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._errors import InvalidRequest
from .._progress import Progress, make_progress
from .gradebook import CsvLog, Gradebook, columns_of
from .runner import grade_job, not_started
from .submissions import Submission, find_submissions
from .suite import TestSuite

if TYPE_CHECKING:
    from .._client import Client
    from .._settings import EngineChoice

from .results import Grade


def grade_submission(
    client: Client,
    submission: Submission,
    suite: TestSuite,
    *,
    engine: EngineChoice | None = None,
    concurrency: int = 1,
    stop_on_first_failure: bool | None = None,
) -> Grade:
    """One student's Grade; a submission that cannot start gets a Grade with the reason as its note."""
    if submission.problem is not None or submission.language is None:
        return not_started(suite, submission.problem or "no source file", student=submission.student)
    try:
        job = client.job(
            submission.source,
            submission.language,
            files=submission.files or None,
            limits=suite.limits,
            name=submission.student,
        )
    except InvalidRequest as exc:  # e.g. a file name the sandbox does not accept
        return not_started(suite, str(exc), student=submission.student, language=submission.language)
    return grade_job(
        client,
        job,
        suite,
        student=submission.student,
        engine=engine,
        concurrency=concurrency,
        stop_on_first_failure=stop_on_first_failure,
    )


def grade_many(
    directory: str | os.PathLike[str],
    suite: TestSuite,
    *,
    concurrency: int = 2,
    progress: bool | Progress = False,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    stop_on_first_failure: bool | None = None,
    client: Client | None = None,
    engine: EngineChoice | None = None,
    on_grade: Callable[[Grade], None] | None = None,
) -> Gradebook:
    """Grade every submission in ``directory`` (``ada.c`` or ``ada/Main.java``: one per student) against ``suite``.

        ``concurrency`` students are graded at a time (on Piston, each sends up to ``concurrency`` test requests at
        once). With ``out``, the gradebook CSV is written as each student finishes; ``resume=True`` keeps the rows
        already there and grades only the students who are missing. ``on_grade`` is called with each student's Grade
    as it is written. Returns the :class:`Gradebook`.
    """
    if not isinstance(suite, TestSuite):
        suite = TestSuite.coerce(suite)
    if concurrency < 1:
        raise InvalidRequest(f"concurrency must be at least 1, not {concurrency}.")
    if client is None:
        from .. import default_client

        client = default_client()
    submissions = find_submissions(directory, suite.language)
    if suite.language == "sql":
        from .sql import check_databases

        check_databases(suite)
    log = CsvLog(out, columns_of(suite), resume=resume) if out is not None else None
    book = Gradebook(suite, rows=log.rows if log is not None else ())
    todo = [s for s in submissions if log is None or s.student not in log.done]
    bar = make_progress(progress, len(todo))
    lock = threading.Lock()
    # locally each student's tests run one after another (the students are the parallel units); on Piston
    # each student's tests go out as one bounded batch
    per_student = concurrency if client.settings.use_piston and engine != "local" else 1

    def one(submission: Submission) -> None:
        grade = grade_submission(
            client,
            submission,
            suite,
            engine=engine,
            concurrency=per_student,
            stop_on_first_failure=stop_on_first_failure,
        )
        with lock:
            row = book.add(grade)
            if log is not None:
                log.write(row)
            if on_grade is not None:
                on_grade(grade)
        # the bar counts students by their first failure's verdict ("ok" when every test passed)
        shown = [r.result for r in grade.results if not r.passed] + [r.result for r in grade.results]
        bar.advance(next((r for r in shown if r is not None), None))

    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(concurrency, max(1, len(todo))), thread_name_prefix="capsule-grade")
    try:
        futures = [pool.submit(one, s) for s in todo]
        for f in futures:
            f.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: the students already graded are in the file
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        if log is not None:
            log.close()
    return book
