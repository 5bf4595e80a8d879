"""The ``codecapsule`` command line.

    codecapsule run hello.java                 run a file (language from its extension)
    codecapsule run -l python -c 'print(42)'   run a snippet
    echo 3 | codecapsule run sum.c             stdin is passed through when it is not a terminal
    codecapsule run --json prog.cpp            print the Result as JSON
    codecapsule demo                           one example per language on the engine in use
    codecapsule engine                         what runs where, and how well it is isolated
    codecapsule runtimes                       languages installed on the Piston server
    codecapsule lab [FOLDER]                   JupyterLab on the classroom notebooks
    codecapsule grade subs/ --tests lab1.yaml  grade a folder of submissions (--out grades.csv, --resume)
    codecapsule cluster ... / doctor           cloud side (see docs/admin.md)

The exit status mirrors the program's: its exit code; 128+n when killed by signal n; 124 on a time limit;
1 for a compile error or wrong answer; 130 when Ctrl-C stopped it; 2 for a usage or service error (one line on
stderr, no traceback). The output is shown as the program writes it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CodeCapsuleError
from ._languages import LANGUAGES, resolve

if TYPE_CHECKING:
    from ._client import Client
    from ._results import Result

_EXTENSIONS = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".java": "java",
    ".c": "c",
    ".cpp": "c++",
    ".cc": "c++",
    ".cxx": "c++",
    ".sql": "sql",
}

# The demo: one small program per language, each reading something or computing something real.
DEMO: tuple[tuple[str, str, str], ...] = (
    (
        "python",
        "import sys\nname = sys.stdin.readline().strip()\nprint(f'Hello, {name}! 6 * 7 =', 6 * 7)",
        "Ada",
    ),
    ("javascript", "const xs = [3, 1, 2];\nconsole.log('sorted:', xs.sort().join(' '));", ""),
    (
        "java",
        "import java.util.Scanner;\n\npublic class Greeter {\n    public static void main(String[] args) {\n"
        "        Scanner in = new Scanner(System.in);\n        int n = in.nextInt();\n"
        '        System.out.println("Java says: " + n + "! = " + factorial(n));\n    }\n\n'
        "    static long factorial(int n) { return n <= 1 ? 1 : n * factorial(n - 1); }\n}\n",
        "10",
    ),
    (
        "c",
        '#include <stdio.h>\nint main(void) {\n    int a, b;\n    scanf("%d %d", &a, &b);\n'
        '    printf("C says: %d + %d = %d\\n", a, b, a + b);\n    return 0;\n}\n',
        "40 2",
    ),
    (
        "c++",
        "#include <iostream>\n#include <vector>\n#include <numeric>\nint main() {\n"
        "    std::vector<int> v{1, 2, 3, 4};\n"
        '    std::cout << "C++ says: sum = " << std::accumulate(v.begin(), v.end(), 0) << std::endl;\n}\n',
        "",
    ),
    (
        "sql",
        "CREATE TABLE grades AS SELECT * FROM (VALUES ('ada', 95), ('alan', 88), ('grace', 91)) t(name, score);\n"
        "SELECT count(*) AS students, avg(score) AS average, max(score) AS best FROM grades;",
        "",
    ),
)


# verdicts whose exit status is fixed; the others give the program's own exit code (1 when it has none)
_VERDICT_STATUS = {"ok": 0, "time_limit": 124, "compile_error": 1, "wrong_answer": 1, "interrupted": 130}


def _exit_status(result: Result) -> int:
    status = _VERDICT_STATUS.get(result.verdict.value)
    if status is not None:
        return status
    code = result.exit_code
    if code:
        return code if 0 < code < 256 else 1
    return 1


def _language_for(path: Path, given: str | None) -> str:
    if given:
        return resolve(given).name
    lang = _EXTENSIONS.get(path.suffix.lower())
    if lang is None:
        raise CodeCapsuleError(
            f"cannot tell the language of {str(path)!r} from its extension; pass -l LANGUAGE "
            f"({', '.join(lang.name for lang in LANGUAGES)})."
        )
    return lang


def _client(args: argparse.Namespace) -> Client:
    from ._client import Client

    options: dict[str, Any] = {}
    if getattr(args, "engine", None):
        options["engine"] = args.engine
    return Client(getattr(args, "piston", None), **options)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.code is None and args.file is None:
        raise CodeCapsuleError("give a FILE to run, or -l LANGUAGE -c CODE.")
    if args.code is not None:
        if not args.language:
            raise CodeCapsuleError("-c CODE needs -l LANGUAGE (e.g. -l python).")
        source, language = args.code, resolve(args.language).name
        prog_args = ([args.file] if args.file else []) + list(args.args)
    else:
        path = Path(args.file)
        try:
            source = path.read_text()
        except OSError as exc:
            raise CodeCapsuleError(f"cannot read {str(path)!r}: {exc.strerror}.") from None
        language = _language_for(path, args.language)
        prog_args = list(args.args)
    files: dict[str, str | bytes] = {}
    for extra in args.with_files or ():
        p = Path(extra)
        try:
            files[p.name] = p.read_bytes() if p.suffix in (".bin", ".dat") else p.read_text()
        except OSError as exc:
            raise CodeCapsuleError(f"cannot read {extra!r}: {exc.strerror}.") from None
    # a terminal: the program reads what is typed, while it runs (on engines that take live input)
    interactive = args.stdin is None and sys.stdin.isatty()
    if args.stdin is not None:
        stdin = args.stdin
    elif not interactive:
        stdin = sys.stdin.read()
    else:
        stdin = ""
    expect = args.expect
    if args.expect_file:
        try:
            expect = Path(args.expect_file).read_text()
        except OSError as exc:
            raise CodeCapsuleError(f"cannot read {args.expect_file!r}: {exc.strerror}.") from None
    with _client(args) as client:
        job = client.job(
            source,
            language,
            stdin=stdin,
            args=prog_args,
            files=files or None,
            version=args.version,
            expect=expect,
            timeout=args.timeout,
            memory=args.memory,
        )
        # messages name the user's files (broken.c:3:18), not the engine's (main.c:3:18)
        names = {job.files[0].name: args.file} if args.code is None else {}
        names.update({Path(extra).name: extra for extra in args.with_files or ()})
        where = client.engine_for(job)
        if where == "duckdb":  # a table, printed once the query is done
            result, stopped = client.run(job), False
            if not args.json:
                _print_sql(result)
        elif where == "piston" and not interactive:
            # Piston's live path never closes the program's stdin: one reading its input to the end would wait
            # for its time limit. Input given up front goes the plain way, output shown when the answer comes.
            from ._terminal import Echo, wait_on_terminal

            result, stopped = wait_on_terminal(client, job)
            if not args.json:
                Echo(names).replay(result)
        else:
            from ._terminal import Echo, run_on_terminal

            echo = None if args.json else Echo(names)
            result, stopped = run_on_terminal(client, job, echo, interactive=interactive)
    status = 130 if stopped else _exit_status(result)  # Ctrl-C: 130, as for any command the shell interrupts
    if args.json:
        print(result.to_json(indent=2))
        return status
    _print_outcome(result, source=source)
    return status


def _print_sql(result: Result) -> None:
    from ._render import table_text

    if result.table is not None:
        sys.stdout.write(table_text(result.table) + "\n")
    elif result.run is not None:
        sys.stdout.write(result.run.stdout)
        sys.stderr.write(result.run.stderr)
    sys.stdout.flush()


def _print_outcome(result: Result, *, source: str | None = None) -> None:
    """After the program's output (shown as it ran): an error that is no output of it; when it failed, the
    comparison with the expected output, hints and a status line (on stderr)."""
    from ._hints import hints_for
    from ._render import status_line, wrong_answer_text

    if result.error and result.table is None and result.run is None:
        sys.stderr.write(result.error + "\n")
    comparison = wrong_answer_text(result)
    if comparison:
        sys.stderr.write(f"--- expected vs your output ---\n{comparison}\n")
    for hint in hints_for(result, source):
        sys.stderr.write(f"Hint: {hint}\n")
    if not result.ok:
        sys.stderr.write(f"[{status_line(result)}]\n")


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._render import status_line, table_text

    worst = 0
    with _client(args) as client:
        for language, source, stdin in DEMO:
            result = client.execute(source, language, stdin=stdin)
            print(f"── {language} " + "─" * (60 - len(language)))
            if result.table is not None:
                print(table_text(result.table))
            else:
                body = result.stdout or result.stderr or (result.compile.stderr if result.compile else "")
                print(body.rstrip("\n"))
            print(f"   [{status_line(result)}]")
            if not result.ok:
                worst = 1
    return worst


def _cmd_engine(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for info in client.engine_info():
            print(info)
            print()
    return 0


def _cmd_runtimes(args: argparse.Namespace) -> int:
    from .engines.piston_cli import print_runtimes

    with _client(args) as client:
        return print_runtimes(client)


def _cmd_lab(args: argparse.Namespace) -> int:
    from ._lab import lab_command, prepare_folder

    folder_arg, lab_args = args.folder, list(args.lab_args)
    if folder_arg is not None and folder_arg.startswith("-"):  # `lab -- --no-browser`: argparse ate the --
        folder_arg, lab_args = None, [folder_arg, *lab_args]
    if lab_args[:1] == ["--"]:
        lab_args = lab_args[1:]
    folder = prepare_folder(folder_arg)
    command = lab_command(folder, lab_args)
    print(f"codecapsule: opening JupyterLab on {folder}", file=sys.stderr, flush=True)
    os.execv(command[0], command)  # JupyterLab takes over this process (Ctrl+C stops it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codecapsule", description="Run student code locally, on Piston, or in DuckDB."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def engine_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--piston", metavar="URL", help="Piston base URL (default: CODECAPSULE_PISTON_URL)")
        p.add_argument("--engine", choices=("auto", "local", "piston"), help="where non-SQL code runs")

    run = sub.add_parser("run", help="run a file or a snippet", description="Run a program and mirror its exit status.")
    run.add_argument("file", nargs="?", help="source file (language from the extension)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the program")
    run.add_argument("-l", "--language", help="language (python, javascript, java, c, c++, sql or an alias)")
    run.add_argument("-c", "--code", help="source code to run instead of a file")
    run.add_argument("--stdin", help="input text (default: this command's stdin when it is not a terminal)")
    run.add_argument("--with", dest="with_files", nargs="+", metavar="FILE", help="extra files for the program")
    run.add_argument("--version", default="*", help="runtime version (Piston), default newest")
    run.add_argument("--timeout", help="run time limit, e.g. 2 or 500ms")
    run.add_argument("--memory", help="memory limit, e.g. 256MB")
    run.add_argument("--expect", help="expected stdout (mismatch → wrong_answer)")
    run.add_argument("--expect-file", help="file holding the expected stdout")
    run.add_argument("--json", action="store_true", help="print the Result as JSON")
    engine_options(run)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run one example per language and print each result")
    engine_options(demo)
    demo.set_defaults(func=_cmd_demo)

    eng = sub.add_parser("engine", help="show what runs where and how it is isolated")
    engine_options(eng)
    eng.set_defaults(func=_cmd_engine)

    rt = sub.add_parser("runtimes", help="list the languages installed on the Piston server")
    rt.add_argument("--piston", metavar="URL", help="Piston base URL (default: CODECAPSULE_PISTON_URL)")
    rt.set_defaults(func=_cmd_runtimes, engine="piston")

    lab = sub.add_parser(
        "lab",
        help="open JupyterLab on the classroom notebooks",
        description="Open JupyterLab on the classroom notebooks: in a clone, notebooks/ itself; otherwise a copy "
        "in FOLDER (default ./codecapsule-notebooks; notebooks already there are kept). Options after -- go to "
        "JupyterLab, e.g. codecapsule lab -- --no-browser --port 8899.",
    )
    lab.add_argument("folder", nargs="?", help="where the notebooks are copied and opened")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="options for JupyterLab, after --")
    lab.set_defaults(func=_cmd_lab)

    from .cluster.cli import add_cluster_commands, add_doctor_command
    from .grading.cli import add_grade_command

    add_grade_command(sub)

    add_cluster_commands(sub)
    add_doctor_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CodeCapsuleError as exc:
        print(f"codecapsule: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # e.g. `codecapsule run big.py | head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
