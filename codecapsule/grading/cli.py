"""``codecapsule grade SUBMISSIONS --tests lab1.yaml --out grades.csv [--concurrency N] [--resume]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._errors import CodeCapsuleError


def _cmd_grade(args: argparse.Namespace) -> int:
    from ..cli import _client
    from .load import load_tests
    from .many import grade_many
    from .results import Grade

    if args.resume and not args.out:
        raise CodeCapsuleError("--resume goes with --out FILE (the gradebook to complete).")
    suite = load_tests(args.tests)

    def show(grade: Grade) -> None:
        print(grade.summary() if grade.note or grade.passed else f"{grade.summary()} · {grade.failures()}", flush=True)

    with _client(args) as client:
        try:
            book = grade_many(
                args.submissions,
                suite,
                concurrency=args.concurrency,
                out=args.out,
                resume=args.resume,
                stop_on_first_failure=True if args.stop_on_first_failure else None,
                client=client,
                engine=args.engine,
                on_grade=show,
            )
        except KeyboardInterrupt:
            where = (
                f"the students graded so far are in {args.out}; add --resume to grade the others" if args.out else ""
            )
            print(f"codecapsule: interrupted; {where or 'nothing was saved (no --out)'}.", file=sys.stderr)
            return 130
    print(book.summary())
    if args.out:
        print(f"gradebook: {args.out}", file=sys.stderr)
    return 0


def add_grade_command(sub: Any) -> None:
    """Register ``codecapsule grade`` on the main parser's subcommands."""
    grade = sub.add_parser(
        "grade",
        help="grade a folder of submissions against a test file",
        description="Grade every submission (ada.c, or a folder ada/ per student) against a YAML test file; the "
        "gradebook CSV is written as each student finishes.",
    )
    grade.add_argument("submissions", help="folder with one file or one folder per student")
    grade.add_argument("--tests", required=True, metavar="FILE", help="the YAML test file (see docs/teachers.md)")
    grade.add_argument("--out", metavar="CSV", help="gradebook file, written as each student finishes")
    grade.add_argument("--concurrency", type=int, default=2, metavar="N", help="students graded at once (default 2)")
    grade.add_argument("--resume", action="store_true", help="keep the rows already in --out; grade only the others")
    grade.add_argument(
        "--stop-on-first-failure", action="store_true", help="skip a student's remaining tests after one fails"
    )
    grade.add_argument("--piston", metavar="URL", help="Piston base URL (default: CODECAPSULE_PISTON_URL)")
    grade.add_argument("--engine", choices=("auto", "local", "piston"), help="where non-SQL code runs")
    grade.set_defaults(func=_cmd_grade)
