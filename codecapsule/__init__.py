"""CodeCapsule: run student code from classroom notebooks.

>>> import codecapsule as cc
>>> cc.execute("print(40 + 2)", "python").stdout      # doctest: +SKIP
'42\\n'

SQL runs in a sandboxed DuckDB worker; Python, JavaScript, Java, C and C++ run on Piston when a URL is configured
(``CODECAPSULE_PISTON_URL``) and otherwise on a sandboxed local engine. Heavy dependencies (DuckDB, IPython,
cloud SDKs) are imported only when used.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _errors as errors
from ._client import AsyncClient, Client, JobLike
from ._errors import *  # noqa: F403 - the exception tree is part of the public API
from ._errors import __all__ as _error_names
from ._events import AsyncRunStream, Finished, InputWanted, Output, RunStream, StageStarted
from ._jobs import File, Job, Limits
from ._languages import LANGUAGES
from ._results import Result, Stage, Table, Verdict
from ._settings import Settings

if TYPE_CHECKING:
    from ._progress import Progress
    from .cluster.cluster import Cluster
    from .cluster.spec import ClusterSpec
    from .grading import Grade, Gradebook, TestCase, TestResult, TestSuite, grade, grade_many, load_tests

__version__ = "0.1.0"

__all__ = [
    "LANGUAGES",
    "AsyncClient",
    "AsyncRunStream",
    "Client",
    "Cluster",
    "ClusterSpec",
    "File",
    "Finished",
    "Grade",
    "Gradebook",
    "InputWanted",
    "Job",
    "Limits",
    "Output",
    "Result",
    "RunStream",
    "Settings",
    "Stage",
    "StageStarted",
    "Table",
    "TestCase",
    "TestResult",
    "TestSuite",
    "Verdict",
    "aexecute",
    "default_client",
    "errors",
    "execute",
    "execute_many",
    "grade",
    "grade_many",
    "load_tests",
    *_error_names,
]

_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The Client the module-level functions use, built from ``CODECAPSULE_*`` settings on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
            atexit.register(_default.close)
        return _default


def execute(
    source: str,
    language: str,
    *,
    stdin: str = "",
    args: Sequence[str] = (),
    files: Mapping[str, str | bytes] | Iterable[File] | None = None,
    version: str = "*",
    limits: Limits | Mapping[str, Any] | None = None,
    expect: str | None = None,
    timeout: float | str | None = None,
    memory: int | str | None = None,
) -> Result:
    """Run ``source`` as ``language`` and return a :class:`Result`.

    ``stdin`` is the program's input, ``args`` its command-line arguments, ``files`` extra files
    (``{"Helper.java": "..."}``), ``limits`` a :class:`Limits` (or dict); ``timeout`` (seconds or ``"500ms"``)
    and ``memory`` (bytes or ``"256MB"``) are shortcuts for the run time and memory limits. With ``expect``,
    output that differs (trailing whitespace aside) gives verdict ``wrong_answer`` and a diff.
    A crashing program is not an exception: look at ``result.verdict``.
    """
    return default_client().execute(
        source,
        language,
        stdin=stdin,
        args=args,
        files=files,
        version=version,
        limits=limits,
        expect=expect,
        timeout=timeout,
        memory=memory,
    )


async def aexecute(
    source: str,
    language: str,
    *,
    stdin: str = "",
    args: Sequence[str] = (),
    files: Mapping[str, str | bytes] | Iterable[File] | None = None,
    version: str = "*",
    limits: Limits | Mapping[str, Any] | None = None,
    expect: str | None = None,
    timeout: float | str | None = None,
    memory: int | str | None = None,
) -> Result:
    """The asynchronous :func:`execute`. SQL runs in the default client's session (the one :func:`execute` uses:
    one DuckDB worker, started once, tables kept across calls), its round trip in a thread so the event loop
    runs on; other languages use a short-lived AsyncClient (its HTTP client belongs to this event loop)."""
    client = default_client()
    job = client.job(
        source,
        language,
        stdin=stdin,
        args=args,
        files=files,
        version=version,
        limits=limits,
        expect=expect,
        timeout=timeout,
        memory=memory,
    )
    if job.lang.sql:
        import asyncio  # not at module level: scripts that never go async skip its import cost

        return await asyncio.to_thread(client.run, job)
    async with AsyncClient() as short_lived:
        return await short_lived.run(job)


def execute_many(
    jobs: Iterable[JobLike], *, concurrency: int | None = None, progress: bool | Progress = False
) -> list[Result]:
    """Run many jobs (Job objects or dicts of :func:`execute` arguments), results in order."""
    return default_client().execute_many(jobs, concurrency=concurrency, progress=progress)


_GRADING = frozenset(
    {"Grade", "Gradebook", "TestCase", "TestResult", "TestSuite", "grade", "grade_many", "load_tests"}
)


def __getattr__(name: str) -> Any:
    # Cluster pulls in nothing heavy itself, but keep it out of `import codecapsule` altogether.
    if name == "Cluster":
        from .cluster.cluster import Cluster

        return Cluster
    if name == "ClusterSpec":
        from .cluster.spec import ClusterSpec

        return ClusterSpec
    if name in _GRADING:  # grading (PyYAML, jsonschema) loads on first use
        from . import grading

        return getattr(grading, name)
    raise AttributeError(f"module 'codecapsule' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext codecapsule``: register the ``%%capsule`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
