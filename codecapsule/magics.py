"""``%%capsule`` and ``%capsule``: the notebook front end. Parsing and display only — engines do the running.

Loaded by ``%load_ext codecapsule``. Configuration through ``%config``::

    %config Capsule.piston_url = "https://piston.example.edu"
    %config Capsule.timeout = "2s"
    %config Capsule.displaylimit = 20

Everything mutable (the Client, its DuckDB connections, the saved cell files) lives on the one ``Capsule``
instance the shell holds, never in module globals. This module imports IPython and traitlets; ``import
codecapsule`` never imports it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, Union, observe, validate

from ._display_budget import DEFAULT_BUDGET, RESULT_VARIABLE, bounded
from ._errors import CodeCapsuleError, EngineError, InvalidRequest
from ._hints import READS_INPUT, hints_for
from ._languages import LANGUAGES, resolve
from ._live_display import Echo, LiveOutcome, follow, interrupted_result
from ._magic_options import check_option_names, clean_help, install_config_magic
from ._render import render_html, render_text
from ._results import Verdict
from ._sql_cells import compose, run_cell

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ._client import Client
    from ._events import RunStream
    from ._jobs import Job
    from ._results import Result

__all__ = [
    "Capsule",
    "CellOptions",
    "MagicFailure",
    "SavedFile",
    "UnexpectedVerdict",
    "load_ipython_extension",
    "parse_cell_line",
    "saved_file_name",
    "unescape",
    "unload_ipython_extension",
]

_VERDICTS = tuple(v.value for v in Verdict)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RED, _RESET = "\x1b[31m", "\x1b[0m"


# -- errors shown without codecapsule's stack --------------------------------------------------------------


class MagicFailure(CodeCapsuleError):
    """A cell that must stop "Run All": shown as one short line, never as a traceback into codecapsule.

    IPython calls ``_render_traceback_`` instead of formatting the stack, in a terminal shell and in a kernel.
    """

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.title = title or type(self).__name__

    def _render_traceback_(self) -> list[str]:
        return [f"{_RED}{self.title}{_RESET}: {self}"]


class UnexpectedVerdict(MagicFailure):
    """The program's verdict is not the one the cell expects (``--expect-verdict``, ``--raise``)."""

    def __init__(self, message: str, *, result: Result, expected: str | None) -> None:
        super().__init__(message)
        self.result = result
        self.expected = expected


# -- parsing (pure) ----------------------------------------------------------------------------------------


class CellOptions(NamedTuple):
    """What a ``%%capsule`` line asks for, checked but not yet resolved against the user's namespace."""

    language: str  # canonical name
    stdin: str | None = None
    stdin_from: str | None = None
    args: tuple[str, ...] = ()
    version: str = "*"
    timeout: str | None = None
    memory: str | None = None
    out: str | None = None
    save: str | None = None  # file name the cell is kept under
    run: bool = False  # with --save: also run it
    with_files: tuple[str, ...] = ()
    expect: str | None = None
    expect_from: str | None = None
    expect_verdict: str | None = None
    raise_on_failure: bool = False
    engine: str | None = None
    db: str | None = None
    db_write: bool = False
    register: tuple[tuple[str, str], ...] = ()  # (SQL name, notebook variable)
    data: tuple[str, ...] = ()  # SQL: directories of course data to allow (read-only)
    tests: str | None = None  # grade the cell against this YAML test file
    no_input: bool = False  # the program sees end-of-input instead of asking in the input box


def _split(line: str) -> list[str]:
    """Shell-like words; quotes group words, backslashes are kept (``\\n`` is handled by :func:`unescape`)."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return list(lexer)


def _program_args(values: Sequence[str]) -> tuple[str, ...]:
    """``--args`` values, each split like a shell would: ``--args "-n 5" in.txt`` → ``-n``, ``5``, ``in.txt``.
    (argparse only accepts a value starting with ``-`` when it contains a space, hence the quoted form.)"""
    try:
        return tuple(word for value in values for word in shlex.split(value))
    except ValueError as exc:
        raise UsageError(f"--args: cannot read {' '.join(values)!r} ({exc}); check the quotes.") from None


def unescape(text: str) -> str:
    r"""``\n``, ``\t`` and ``\\`` in an option value become a newline, a tab and a backslash."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], text)


def saved_file_name(name: str, language: str) -> str:
    """The file name ``--save NAME`` keeps a cell under: ``Point`` → ``Point.java`` for Java; a name with an
    extension (``point.h``) is kept as it is."""
    lang = resolve(language)
    base = name.rsplit("/", 1)[-1]
    return name if "." in base else name + lang.extension


def _language_help() -> str:
    return ", ".join(f"{lang.name} ({', '.join(lang.aliases)})" if lang.aliases else lang.name for lang in LANGUAGES)


def parse_cell_line(line: str) -> CellOptions:
    """Parse a ``%%capsule`` line into :class:`CellOptions`; any mistake is a short ``UsageError``."""
    try:
        argv = _split(line)
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"%%capsule: cannot read the options ({exc}); check the quotes.") from None
    if not argv:
        raise UsageError(f"%%capsule needs a language, e.g. %%capsule java. Languages: {_language_help()}.")
    magic: Any = Capsule.capsule
    parser: Any = magic.parser  # set by @magic_arguments
    check_option_names(argv, parser)  # did-you-mean before argparse's "unrecognized arguments"
    ns = parser.parse_args(argv)
    try:
        language = resolve(ns.language).name
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None

    def both(a: str, b: str) -> None:
        if getattr(ns, a.replace("-", "_")) is not None and getattr(ns, b.replace("-", "_")) is not None:
            raise UsageError(f"use either --{a} or --{b}, not both.")

    both("stdin", "stdin-from")
    both("expect", "expect-from")
    sql = resolve(language).sql
    if ns.run and ns.save is None:
        raise UsageError("--run goes with --save NAME (save the cell and also run it).")
    if not sql and (ns.db or ns.db_write or ns.register or ns.data):
        raise UsageError("--db, --db-write, --register and --data are for SQL cells (%%capsule sql).")
    if ns.tests is not None and (ns.stdin is not None or ns.stdin_from or ns.expect is not None or ns.expect_from):
        raise UsageError("--tests gives every test's input and expected output: drop --stdin/--expect.")
    if ns.db_write and ns.db is None:
        raise UsageError("--db-write goes with --db PATH (open that database for writing).")
    register: list[tuple[str, str]] = []
    for item in ns.register or ():
        name, eq, var = item.partition("=")
        name, var = name.strip(), (var.strip() if eq else name.strip())
        if not _IDENTIFIER.match(name) or not _IDENTIFIER.match(var):
            raise UsageError(f"--register {item!r}: use name=VARIABLE (for example --register scores=df).")
        register.append((name, var))
    for var in (ns.out, ns.stdin_from, ns.expect_from):
        if var is not None and not _IDENTIFIER.match(var):
            raise UsageError(f"{var!r} is not a Python variable name.")
    save = None
    if ns.save is not None:
        try:
            save = saved_file_name(ns.save, language)
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
    return CellOptions(
        language=language,
        stdin=unescape(ns.stdin) if ns.stdin is not None else None,
        stdin_from=ns.stdin_from,
        args=_program_args(ns.args or ()),
        version=ns.version or "*",
        timeout=ns.timeout,
        memory=ns.memory,
        out=ns.out,
        save=save,
        run=ns.run,
        with_files=tuple(ns.with_files or ()),
        expect=unescape(ns.expect) if ns.expect is not None else None,
        expect_from=ns.expect_from,
        expect_verdict=ns.expect_verdict,
        raise_on_failure=ns.raise_on_failure,
        engine=ns.engine,
        db=ns.db,
        db_write=ns.db_write,
        register=tuple(register),
        data=tuple(ns.data or ()),
        tests=ns.tests,
        no_input=ns.no_input,
    )


# The %%capsule options, in the order `%%capsule?` lists them: (names, argparse keyword arguments).
_CELL_ARGUMENTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("language",), {"help": f"The cell's language: {_language_help()}."}),
    (("--stdin",), {"metavar": "TEXT", "help": r"Input for the program (\n for a new line)."}),
    (
        ("--stdin-from",),
        {"metavar": "VAR", "help": "Input from a notebook variable (a str or a list of lines)."},
    ),
    (
        ("--args",),
        {
            "nargs": "+",
            "metavar": "ARG",
            "help": 'Arguments for the program (quote ones starting with -: --args "-n 5" in.txt).',
        },
    ),
    (
        ("--version",),
        {"metavar": "V", "help": "Runtime version (Piston), e.g. 3.12 or 17.*; default: newest."},
    ),
    (("--timeout",), {"metavar": "S", "help": "Run time limit, e.g. 2 or 500ms (default: Capsule.timeout)."}),
    (("--memory",), {"metavar": "SIZE", "help": "Memory limit, e.g. 256MB (default: Capsule.memory)."}),
    (("--out",), {"metavar": "VAR", "help": "Store the Result in this variable (SQL: VAR.table.df())."}),
    (
        ("--save",),
        {
            "metavar": "NAME",
            "help": "Keep the cell as file NAME (Point.java, point.h) without "
            "running it; later cells add it with --with NAME.",
        },
    ),
    (("--run",), {"action": "store_true", "help": "With --save: also run the cell."}),
    (
        ("--with",),
        {
            "dest": "with_files",
            "nargs": "+",
            "action": "extend",
            "metavar": "NAME",
            "help": "Add files saved with --save (multi-file Java/C/C++ programs).",
        },
    ),
    (
        ("--expect",),
        {"metavar": "TEXT", "help": r"Expected output (\n for a new line): a mismatch is wrong_answer."},
    ),
    (("--expect-from",), {"metavar": "VAR", "help": "Expected output from a notebook variable."}),
    (
        ("--expect-verdict",),
        {
            "choices": _VERDICTS,
            "metavar": "VERDICT",
            "help": f"The verdict this cell must get ({', '.join(_VERDICTS)}): a cell that "
            "fails on purpose does not stop Run All; any other verdict raises.",
        },
    ),
    (
        ("--raise",),
        {
            "dest": "raise_on_failure",
            "action": "store_true",
            "help": "Raise when the verdict is not ok (scripted grading).",
        },
    ),
    (
        ("--engine",),
        {"choices": ("auto", "local", "piston"), "help": "Run on this engine (default: Capsule.engine)."},
    ),
    (
        ("--db",),
        {
            "metavar": "PATH",
            "help": "SQL: open this DuckDB database (read-only) for this and later cells; :memory: goes back "
            "to the session database.",
        },
    ),
    (("--db-write",), {"action": "store_true", "help": "SQL: open --db PATH for writing."}),
    (
        ("--register",),
        {
            "nargs": "+",
            "action": "extend",
            "metavar": "NAME=VAR",
            "help": "SQL: expose a notebook DataFrame as table NAME (the sandbox does not scan variables).",
        },
    ),
    (
        ("--data",),
        {
            "nargs": "+",
            "action": "extend",
            "metavar": "DIR",
            "help": "SQL: let queries read files under DIR (read-only), for this and later cells "
            "(adds to Capsule.sql_data).",
        },
    ),
    (
        ("--no-input",),
        {
            "action": "store_true",
            "help": "Do not ask for input in the input box: a program that reads stdin sees end-of-input "
            "(default: ask, unless Capsule.interactive is False).",
        },
    ),
    (
        ("--tests",),
        {
            "metavar": "FILE",
            "help": "Grade the cell against a YAML test file: a table of tests (hidden ones show only pass/fail).",
        },
    ),
)

_F = TypeVar("_F", bound=Callable[..., Any])


def _cell_arguments(func: _F) -> _F:
    """IPython's ``@argument`` decorators applied from the table above, then ``@magic_arguments()``: the same
    parser and generated ``%%capsule?`` help as writing them out, with one typed entry point."""
    decorated: Any = func
    add: Any = argument
    for names, kwargs in reversed(_CELL_ARGUMENTS):  # decorators apply bottom-up
        decorated = add(*names, **kwargs)(decorated)
    # named "%capsule" because the help formatter adds one "%": the generated help reads "%%capsule [...]"
    finish: Any = cast(Any, magic_arguments)(name="%capsule")
    decorated = finish(decorated)
    decorated.__doc__ = clean_help(decorated.__doc__)  # %%capsule? as plain text, no reST markers
    return cast(_F, decorated)


# -- the magics --------------------------------------------------------------------------------------------


class SavedFile(NamedTuple):
    """A cell kept with ``--save``: added to later runs with ``--with NAME``."""

    name: str
    language: str
    source: str


@magics_class
class Capsule(Magics):
    """``%%capsule LANGUAGE`` runs a cell in a sandbox; ``%capsule`` inspects the setup."""

    piston_url = Unicode(
        None,
        allow_none=True,
        help="Piston base URL (https://...). Default: CODECAPSULE_PISTON_URL, else the local "
        "engine. Access credentials come from the environment only.",
    ).tag(config=True)
    engine = Enum(
        ["auto", "local", "piston"],
        "auto",
        help="Where non-SQL cells run: auto (Piston if a URL is set), local or piston.",
    ).tag(config=True)
    timeout = Union(
        [Float(), Unicode()],
        default_value=None,
        allow_none=True,
        help="Default run time limit of a cell, e.g. 2 or '500ms'.",
    ).tag(config=True)
    memory = Union(
        [Int(), Unicode()],
        default_value=None,
        allow_none=True,
        help="Default memory limit of a cell, e.g. '256MB'.",
    ).tag(config=True)
    displaylimit = Int(10, help="SQL rows shown under a cell (0: all rows the result kept).").tag(config=True)
    max_lines = Int(40, help="Output lines shown before the rest is folded.").tag(config=True)
    sql_data = List(
        Unicode(),
        help="Directories SQL cells may read files from (read-only course data: read_csv('data/grades.csv')).",
    ).tag(config=True)
    raise_on_failure = Bool(
        False,
        help="Raise when a program's verdict is not ok (for scripted grading), as --raise does for one cell.",
    ).tag(config=True)
    interactive = Bool(
        True,
        help="Ask for a program's input in the notebook's input box when no --stdin is given. False (grading "
        "notebooks): the program sees end-of-input, as with --no-input on every cell.",
    ).tag(config=True)
    output_budget = Int(
        DEFAULT_BUDGET,
        help="Bytes of each output stream a cell's display keeps (head and tail); the whole output stays in "
        "_capsule_result while the kernel runs.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._clients: dict[tuple[str, bool] | None, Client] = {}
        self._database: tuple[str, bool] | None = None  # current --db (path, writable); None: session default
        self.saved: dict[str, SavedFile] = {}
        self._restore_config: Callable[[], None] = lambda: None  # puts IPython's own %config back

    # -- configuration ------------------------------------------------------------------------------------

    @validate("piston_url")
    def _check_url(self, proposal: Any) -> str | None:
        value = proposal["value"]
        if value is not None and value.strip() and not value.strip().startswith(("http://", "https://")):
            raise TraitError(
                f"Capsule.piston_url must start with https:// (or http:// for a local server), not {value!r}."
            )
        return value  # type: ignore[no-any-return]

    @validate("timeout")
    def _check_timeout(self, proposal: Any) -> Any:
        from ._units import parse_duration

        if proposal["value"] is not None:
            try:
                parse_duration(proposal["value"], name="Capsule.timeout")
            except InvalidRequest as exc:
                raise TraitError(str(exc)) from None
        return proposal["value"]

    @validate("memory")
    def _check_memory(self, proposal: Any) -> Any:
        from ._units import parse_size

        if proposal["value"] is not None:
            try:
                parse_size(proposal["value"], name="Capsule.memory")
            except InvalidRequest as exc:
                raise TraitError(str(exc)) from None
        return proposal["value"]

    @validate("sql_data")
    def _check_sql_data(self, proposal: Any) -> Any:
        from ._settings import sql_directories

        try:
            return list(dict.fromkeys(sql_directories(proposal["value"])))  # absolute, each once
        except CodeCapsuleError as exc:
            raise TraitError(str(exc)) from None

    @observe("sql_data")
    def _sql_data_changed(self, change: Any) -> None:
        for client in self._clients.values():
            client.sql.allow_directories(change["new"])  # the session's tables are kept

    @observe("piston_url")
    def _url_changed(self, change: Any) -> None:
        self.close()  # the next cell builds a Client for the new URL

    def close(self) -> None:
        """Close every Client (Piston connections, DuckDB databases). Saved files are kept."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def _client(self, database: tuple[str, bool] | None = None) -> Client:
        client = self._clients.get(database)
        if client is None:
            from ._client import Client

            options: dict[str, Any] = {"sql_data": tuple(self.sql_data)}
            if database is not None:
                options.update(database=database[0], database_read_only=not database[1])
            try:
                client = Client(self.piston_url or None, **options)
            except CodeCapsuleError as exc:
                raise MagicFailure(str(exc), title=type(exc).__name__) from None
            self._clients[database] = client
        return client

    # -- %%capsule ------------------------------------------------------------------------------------------

    @cell_magic
    @_cell_arguments
    def capsule(self, line: str, cell: str) -> None:
        """Run the cell as a program in a sandbox and show its output, errors and verdict.

        Examples::

            %%capsule java
            %%capsule python --stdin "3 4" --expect 7
            %%capsule cpp --save point.h
            %%capsule cpp --with point.h --timeout 1s
            %%capsule sql --register scores=df --out result
            %%capsule c --tests lab1.yaml
        """
        opts = parse_cell_line(line)
        if opts.save is not None:
            if resolve(opts.language).sql:  # a saved query keeps the queries it is composed of
                cell = compose(cell, [(f.name, f.source) for f in self._sql_saved(opts.with_files)])
            self.saved[opts.save] = SavedFile(opts.save, opts.language, cell)
            if not opts.run:
                _publish_note(
                    f"saved {opts.save} ({opts.language}, {_lines(cell)}); add it to a run with --with {opts.save}"
                )
                return
        if opts.tests is not None:
            from .grading.notebook import grade_cell

            grade_cell(self, cell, opts, exclude=opts.save)
            return
        self._run(cell, opts, exclude=opts.save)

    # -- %capsule -----------------------------------------------------------------------------------------

    @line_magic("capsule")  # type: ignore[arg-type]  # IPython types the name argument loosely
    def capsule_line(self, line: str) -> None:
        """%capsule runtimes | engine | files | run NAME [options]: what is installed, what runs where,
        the files saved with --save, and running a saved file (options as for %%capsule)."""
        command, _, rest = line.strip().partition(" ")
        if command == "runtimes":
            print(self._runtimes_text())
        elif command == "engine":
            print(self._engine_text())
        elif command == "files":
            print(self._files_text())
        elif command == "run":
            name, _, options = rest.strip().partition(" ")
            saved = self._saved(name)
            opts = parse_cell_line(f"{saved.language} {options}")
            if opts.save is not None:
                raise UsageError("%capsule run runs a saved file; --save does not apply.")
            self._run(saved.source, opts, exclude=saved.name)
        else:
            raise UsageError(
                f"unknown %capsule command {command!r}. Use: %capsule runtimes | engine | files | run NAME "
                "[options]; %%capsule LANGUAGE runs a cell (see %%capsule?)."
                if command
                else "use %capsule runtimes | engine | files | run NAME; %%capsule LANG runs a cell."
            )

    def _saved(self, name: str) -> SavedFile:
        if name in self.saved:
            return self.saved[name]
        matches = [f for f in self.saved.values() if f.name.rsplit(".", 1)[0] == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(self.saved)) or "none yet"
        raise UsageError(
            f"no saved file {name!r} (saved: {known}). Save a cell first with %%capsule LANG --save {name or 'NAME'}."
        )

    def _runtimes_text(self) -> str:
        client = self._client()
        try:
            if self.engine == "piston" or (self.engine == "auto" and client.settings.use_piston):
                runtimes = client.runtimes()
                rows = [
                    f"{getattr(r, 'language', '?'):<12} {getattr(r, 'version', '?'):<12} "
                    f"{', '.join(getattr(r, 'aliases', ()) or ())}"
                    for r in runtimes
                ]
                return "\n".join([f"Piston runtimes at {client.settings.piston_url}:", *rows])
            infos = client.engine_info()
        except CodeCapsuleError as exc:
            raise MagicFailure(str(exc), title=type(exc).__name__) from None
        lines = []
        for info in infos:
            lines.append(f"{info.name}:")
            lines.extend(f"  {lang:<12} {version}" for lang, version in info.languages.items())
        return "\n".join(lines)

    def _engine_text(self) -> str:
        try:
            infos = self._client(self._database).engine_info()
        except CodeCapsuleError as exc:
            raise MagicFailure(str(exc), title=type(exc).__name__) from None
        text = "\n\n".join(str(info) for info in infos)
        db = self._database
        where = f"{db[0]} ({'writable' if db[1] else 'read-only'})" if db else "the session database"
        return f"{text}\n\nSQL cells use {where}. Capsule.engine = {self.engine!r}."

    def _files_text(self) -> str:
        if not self.saved:
            return "no saved files yet: %%capsule LANG --save NAME keeps a cell as a file."
        return "\n".join(f"{f.name:<24} {f.language:<10} {_lines(f.source)}" for f in self.saved.values())

    # -- running a cell ----------------------------------------------------------------------------------

    def _value(self, var: str, what: str) -> Any:
        ns = self.shell.user_ns if self.shell is not None else {}
        if var not in ns:
            raise UsageError(f"{what}: there is no variable {var!r} in the notebook; define it in a cell above.")
        return ns[var]

    def _text_from(self, var: str, what: str) -> str:
        value = self._value(var, what)
        if isinstance(value, str):
            return value
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return "\n".join(value) + "\n"
        raise UsageError(f"{what}: {var!r} is a {type(value).__name__}; use a str (or a list of lines).")

    def _job(self, source: str, opts: CellOptions, exclude: str | None) -> Job:
        return _to_job(self._job_spec(source, opts, exclude))

    def _job_spec(self, source: str, opts: CellOptions, exclude: str | None) -> dict[str, Any]:
        """The cell as ``execute()``/``stream()`` keyword arguments (source and language included)."""
        stdin = opts.stdin
        if opts.stdin_from is not None:
            stdin = self._text_from(opts.stdin_from, "--stdin-from")
        elif stdin and not stdin.endswith("\n"):
            stdin += "\n"  # typed input ends with Enter
        expect = opts.expect if opts.expect_from is None else self._text_from(opts.expect_from, "--expect-from")
        files = {}
        if resolve(opts.language).sql:  # saved queries become CTEs in front of the cell
            source = compose(source, [(f.name, f.source) for f in self._sql_saved(opts.with_files, exclude)])
        for name in () if resolve(opts.language).sql else opts.with_files:
            saved = self._saved(name)
            if saved.name != exclude:
                files[saved.name] = saved.source
        timeout = opts.timeout if opts.timeout is not None else self.timeout
        memory = opts.memory if opts.memory is not None else self.memory
        return {
            "source": source,
            "language": opts.language,
            "stdin": stdin or "",
            "args": opts.args,
            "files": files,
            "version": opts.version,
            "expect": expect,
            "timeout": timeout,
            "memory": memory,
        }

    def _sql_saved(self, names: Sequence[str], exclude: str | None = None) -> list[SavedFile]:
        found = [self._saved(name) for name in names]
        for saved in found:
            if not resolve(saved.language).sql:
                raise UsageError(f"--with {saved.name}: a {saved.language} file, not a saved SQL query.")
        return [f for f in found if f.name != exclude]

    def _sql_client(self, opts: CellOptions) -> Client:
        if opts.db is not None:
            # ":memory:" goes back to the session's own database
            wanted = None if opts.db == ":memory:" else (opts.db, opts.db_write)
            if self._database != wanted:
                if wanted is not None:
                    # one connection per file: close the other mode's connection before reopening
                    for key in [k for k in self._clients if k is not None and k[0] == wanted[0]]:
                        self._clients.pop(key).close()
                    client = self._client(wanted)
                    try:
                        client.sql.start()  # open it now: a bad path must not become the current database
                    except CodeCapsuleError:
                        self._clients.pop(wanted).close()
                        raise
                self._database = wanted
                where = "the session database" if wanted is None else opts.db
                mode = "" if wanted is None else (" (writable)" if opts.db_write else " (read-only)")
                _publish_note(f"SQL cells now use {where}{mode}")
        if opts.data:
            try:
                self.sql_data = [*self.sql_data, *opts.data]
            except TraitError as exc:
                raise UsageError(f"--data: {exc}") from None
        client = self._client(self._database)
        for name, var in opts.register:
            value = self._value(var, "--register")
            try:
                client.sql.register(name, value)
            except CodeCapsuleError as exc:
                raise UsageError(f"--register {name}={var}: {exc}") from None
        return client

    def _execute(self, client: Client, job: Job, opts: CellOptions) -> LiveOutcome:
        """Run the cell: a program live (output as it happens, input asked for), SQL as one query. Stop
        (KeyboardInterrupt) ends either with the verdict interrupted instead of a traceback."""
        engine: Any = opts.engine or self.engine
        try:
            if job.lang.sql:
                result = run_cell(client, job, self.shell.user_ns if self.shell is not None else {}, engine)
            else:
                given_stdin = opts.stdin is not None or opts.stdin_from is not None
                can_ask = self.interactive and not opts.no_input and not given_stdin
                run = _open_stream(client, job, interactive=not given_stdin, engine=engine)
                return follow(run, language=job.language, ask=input if can_ask else None, echo=Echo(self.output_budget))
        except KeyboardInterrupt:  # the SQL worker stops its query on it; a run stopped before it streamed
            result = interrupted_result(job.language)
        return LiveOutcome(result, echoed=False, unasked=False)

    def _run(self, source: str, opts: CellOptions, *, exclude: str | None) -> Result:
        job = self._job(source, opts, exclude)
        try:
            client = self._sql_client(opts) if job.lang.sql else self._client()
            result, echoed, unasked = self._execute(client, job, opts)
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
        except UsageError:
            raise  # already one line (--register, --data, --with)
        except CodeCapsuleError as exc:
            raise MagicFailure(str(exc), title=type(exc).__name__) from None
        except Exception as exc:
            # a bug in CodeCapsule or an error the engine did not wrap: still one line under the student's cell;
            # the original stays chained (sys.last_value.__cause__) for whoever debugs it
            raise MagicFailure(
                f"{exc} (a problem in CodeCapsule's {job.language} engine, not in this program; please report it)",
                title=type(exc).__name__,
            ) from exc

        verdict = result.verdict.value
        note: tuple[str, str] | None = None
        failure: str | None = None
        if opts.expect_verdict is not None:
            if verdict == opts.expect_verdict:
                if verdict != "ok":
                    note = ("ok", f"expected verdict {verdict}: this cell fails on purpose.")
            else:
                failure = (
                    f"expected verdict {opts.expect_verdict}, but the program {result.verdict.description} ({verdict})."
                )
        elif verdict != "ok" and (opts.raise_on_failure or self.raise_on_failure):
            failure = f"the program {result.verdict.description} ({verdict})."
        if unasked and not any(hint.startswith(READS_INPUT) for hint in hints_for(result, job.source)):
            result = dataclasses.replace(result, notes=(*result.notes, READS_INPUT))
        if echoed:
            _clear_live_output()  # the final view replaces the live one: the notebook keeps the output once
        self._show(bounded(result, max(1, self.output_budget)), job, note)
        if self.shell is not None:
            self.shell.user_ns[RESULT_VARIABLE] = result  # the whole output, while the kernel lives
            if opts.out is not None:
                self.shell.user_ns[opts.out] = result
        if failure is not None:
            raise UnexpectedVerdict(failure, result=result, expected=opts.expect_verdict)
        return result

    def _show(self, result: Result, job: Job, note: tuple[str, str] | None) -> None:

        options: dict[str, Any] = {
            "max_rows": self.displaylimit if self.displaylimit > 0 else 1 << 62,
            "max_lines": max(1, self.max_lines),
            "main_file": job.files[0].name,
            # the cell's line 1 is the %%capsule line: the program's line n is the cell's line n + 1
            "line_offset": 1,
            "other_files": [f.name for f in job.files[1:]],
            "note": note,
            "source": job.source,  # hints look at the program (void main, ...)
        }
        _display({"text/html": render_html(result, **options), "text/plain": render_text(result, **options)})


def _to_job(spec: dict[str, Any]) -> Job:
    from ._client import to_job

    try:
        return to_job(spec)
    except InvalidRequest as exc:
        raise UsageError(str(exc)) from None


def _open_stream(client: Client, job: Job, *, interactive: bool, engine: Any) -> RunStream:
    """A live run; interactive where the engine can take typed input. One that cannot (it refuses before
    anything starts) runs the program with an empty stdin: it sees end-of-input, and the EOF hint says why."""
    if interactive:
        try:
            return client.stream_job(job, interactive=True, engine=engine)
        except (EngineError, InvalidRequest):
            pass
    return client.stream_job(job, interactive=False, engine=engine)


def _clear_live_output() -> None:
    from IPython import display as ipd

    sys.stdout.flush()
    sys.stderr.flush()
    clear: Any = ipd.clear_output
    clear(wait=True)  # cleared when the final view arrives: no flicker


def _display(bundle: dict[str, str]) -> None:
    """Publish a ready MIME bundle under the cell (IPython's display() is untyped)."""
    from IPython import display as ipd

    show: Any = ipd.display
    show(bundle, raw=True)


def _publish_note(text: str) -> None:
    from html import escape

    html = (
        f'<div class="cc-note" style="font-size:85%;opacity:0.8;font-family:var(--jp-ui-font-family, '
        f'sans-serif)">ℹ {escape(text)}</div>'
    )
    _display({"text/html": html, "text/plain": f"ℹ {text}"})


# -- registration ------------------------------------------------------------------------------------------


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext codecapsule``: one Capsule instance on this shell (``%config Capsule.*`` configures it)."""
    capsule = Capsule(shell=ipython)
    ipython.register_magics(capsule)
    capsule._restore_config = install_config_magic(ipython, capsule)  # %config Capsule.*: checked, one line


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """``%unload_ext codecapsule``: close the clients, drop the magics and the configurable."""
    magics = ipython.magics_manager.registry.pop("Capsule", None)
    if magics is None:
        return
    magics.close()
    magics._restore_config()
    ipython.magics_manager.magics["cell"].pop("capsule", None)
    ipython.magics_manager.magics["line"].pop("capsule", None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)


def _lines(text: str) -> str:
    n = len(text.splitlines())
    return f"{n} line{'' if n == 1 else 's'}"
