"""``grade()``: run one submission against every test of a suite and score it.

On the local engine the program is compiled once and every test runs on that build, each in a fresh sandbox
(:meth:`LocalEngine.compile` / :meth:`LocalEngine.run_compiled`). On Piston every test is one request, sent
through the client's batch path with bounded concurrency. SQL problems are graded by result equivalence
(:mod:`.sql`). A test that fails in any way (time limit, crash) is named in the Grade and the others still run,
unless ``stop_on_first_failure``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._jobs import File, Job, Limits
from .._results import Result, Verdict
from .._verdicts import internal_error
from .results import Grade, TestResult
from .suite import TestCase, TestSuite

if TYPE_CHECKING:
    from .._client import Client
    from .._settings import EngineChoice


def score(suite: TestSuite, test: TestCase, result: Result) -> TestResult:
    """Compare the program's output with the test's expectation (the suite's comparison mode) and score it."""
    if result.verdict is Verdict.OK and test.expect is not None:
        diff = suite.comparison(test).diff(result.stdout, test.expect)
        result = replace(
            result, expected=test.expect, diff=diff, verdict=Verdict.WRONG_ANSWER if diff is not None else Verdict.OK
        )
    passed = result.verdict is Verdict.OK
    return TestResult(test, result, passed, test.points if passed else 0)


def skipped(test: TestCase) -> TestResult:
    return TestResult(test, None, False, 0)


def not_started(suite: TestSuite, reason: str, *, student: str | None = None, language: str | None = None) -> Grade:
    """The Grade of a submission that could not even start: no points, every test skipped, the reason kept."""
    return Grade(tuple(skipped(t) for t in suite.tests), suite.max_score, student, language, note=reason)


def _in_order(
    suite: TestSuite, run_one: Callable[[TestCase], Result], *, stop: bool, concurrency: int
) -> list[TestResult]:
    """Every test through ``run_one``: one after the other when stopping at the first failure, else on a pool."""
    tests = suite.tests
    if stop or concurrency <= 1 or len(tests) == 1:
        out: list[TestResult] = []
        for test in tests:
            if stop and out and not out[-1].passed:
                out.append(skipped(test))
                continue
            out.append(score(suite, test, run_one(test)))
        return out
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(concurrency, len(tests)), thread_name_prefix="capsule-grade") as pool:
        results = list(pool.map(run_one, tests))
    return [score(suite, t, r) for t, r in zip(tests, results, strict=True)]


def _run_local(client: Client, job: Job, suite: TestSuite, stop: bool, concurrency: int) -> list[TestResult]:
    local = client._local_engine()
    try:
        artifact = local.compile(job)
    except Exception as exc:  # e.g. the toolchain is missing: every test says why
        failed = internal_error(job, local.name, exc)
        return [score(suite, t, replace(failed, name=t.name)) for t in suite.tests]
    with artifact:
        if artifact.result is not None:  # did not compile: the same compile error for every test
            return [score(suite, t, replace(artifact.result, name=t.name)) for t in suite.tests]

        def run_one(test: TestCase) -> Result:
            try:
                return local.run_compiled(artifact, stdin=test.stdin, args=test.args, name=test.name)
            except Exception as exc:
                return internal_error(replace(job, name=test.name), local.name, exc)

        return _in_order(suite, run_one, stop=stop, concurrency=concurrency)


def _run_batch(
    client: Client, job: Job, suite: TestSuite, stop: bool, concurrency: int, engine: EngineChoice | None
) -> list[TestResult]:
    jobs = [replace(job, stdin=t.stdin, args=t.args, name=t.name) for t in suite.tests]
    if stop:
        by_name = {j.name: j for j in jobs}

        def run_one(test: TestCase) -> Result:
            return client.execute_many([by_name[test.name]], concurrency=1, engine=engine)[0]

        return _in_order(suite, run_one, stop=True, concurrency=1)
    results = client.execute_many(jobs, concurrency=concurrency, engine=engine)
    return [score(suite, t, r) for t, r in zip(suite.tests, results, strict=True)]


def grade_job(
    client: Client,
    job: Job,
    suite: TestSuite,
    *,
    student: str | None = None,
    engine: EngineChoice | None = None,
    concurrency: int = 4,
    stop_on_first_failure: bool | None = None,
) -> Grade:
    """Grade a prepared Job (its stdin/args are replaced by each test's)."""
    stop = suite.stop_on_first_failure if stop_on_first_failure is None else stop_on_first_failure
    if job.lang.sql:
        from .sql import grade_sql

        results = grade_sql(client, job, suite, stop=stop)
    elif client._wants_piston(job, engine):
        results = _run_batch(client, job, suite, stop, concurrency, engine)
    else:
        results = _run_local(client, job, suite, stop, concurrency)
    return Grade(tuple(results), suite.max_score, student, job.language)


def grade(
    source: str,
    language: str | None,
    tests: TestSuite | Sequence[TestCase] | Iterable[TestCase],
    *,
    files: Mapping[str, str | bytes] | Iterable[File] | None = None,
    timeout: float | str | None = None,
    memory: int | str | None = None,
    limits: Limits | Mapping[str, Any] | None = None,
    compare: str | None = None,
    stop_on_first_failure: bool | None = None,
    student: str | None = None,
    client: Client | None = None,
    engine: EngineChoice | None = None,
    concurrency: int = 4,
) -> Grade:
    """Grade ``source`` against ``tests`` (a list of :class:`TestCase` or a :class:`TestSuite`).

    ``language`` may be None when the suite names one. ``timeout``/``memory``/``limits`` override the suite's
    limits; ``compare`` its comparison mode (``exact``, ``trim``, ``tokens``, ``float:1e-6``). Compiled
    languages are compiled once; each test then runs in a fresh sandbox. Returns a :class:`Grade`.
    """
    suite = TestSuite.coerce(tests)
    if compare is not None:
        suite = replace(suite, compare=compare)
    language = language or suite.language
    if language is None:
        from .._errors import InvalidTestSuite

        raise InvalidTestSuite("grade() needs a language: pass one (grade(source, 'c', tests)) or set it in the suite.")
    if client is None:
        from .. import default_client

        client = default_client()
    base_limits = Limits.coerce(limits).over(suite.limits) if limits is not None else suite.limits
    job = client.job(source, language, files=files, limits=base_limits, timeout=timeout, memory=memory, name=student)
    return grade_job(
        client,
        job,
        suite,
        student=student,
        engine=engine,
        concurrency=concurrency,
        stop_on_first_failure=stop_on_first_failure,
    )
