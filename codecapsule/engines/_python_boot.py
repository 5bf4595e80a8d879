"""How both engines start a Python program, and how they read back whether it compiled (pure, no I/O).

Python has no separate compile step, yet a SyntaxError means the same as a C compile error: none of the program
ran. So both engines start the program through one bootstrap (:func:`boot_source`) that reads and ``compile()``s
the entry file *before any student code runs*, and writes exactly one first line to stderr (flushed) saying how
that went: :data:`COMPILED` or :data:`SYNTAX`. On a syntax error it then prints the report ``python main.py``
prints (file, line, caret) and exits 1 without running anything.

The line is a fact, not a guess from what the program printed: it is written before the student's code exists as
a running thing, so a program cannot put anything before it, and it is only trusted as the *first* line of
stderr. :func:`split_compile_outcome` strips it from stderr and from the interleaved output, and turns a run
whose line says "syntax" into a failed compile stage (no run stage: the same shape as a C compile error on both
engines). No line (the interpreter died before it) means the facts are unknown: the run stays as it was.

The local engine runs ``python3 -E -s -S -B -c BOOT args``; Piston (which runs ``python3.x <first code file>
args``) gets the bootstrap as the first code file (:data:`BOOT_FILE`) and the student's files untouched. The
bootstrap then makes the program look like a script run on both: ``sys.argv[0]`` is the entry's name,
``__file__`` its absolute path, ``sys.path[0]`` its directory (``import helper``), ``__main__`` a fresh module,
``exit()``/``quit()`` defined (only where ``site`` did not already), and its own frames hidden from tracebacks.
No ``__pycache__`` is written on either (``-B`` locally), so the program sees the same directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from .._results import Stage

__all__ = ["BOOT_FILE", "COMPILED", "SYNTAX", "boot_file", "boot_source", "split_compile_outcome"]

# A NUL first: no line a program prints by accident, and never trusted anywhere but stderr's first line.
_MARK = "\x00capsule:"
COMPILED = _MARK + "compiled\n"
SYNTAX = _MARK + "syntax\n"

#: The bootstrap's name on Piston (not importable: a ``-`` is no module name); it removes itself once started,
#: so the program sees the same directory on both engines.
BOOT_FILE = ".capsule-boot.py"

# ENTRY is the entry file's name, relative to the job directory: the directory of this file on Piston, the
# working directory under `-c` locally. What compile() prints (a SyntaxWarning) is held back until the marker is
# out, then printed right after it — where `python3 main.py` prints it: before the program runs.
_BOOT = """\
import sys,os,io,builtins
B=(lambda:0).__code__.co_filename
if not hasattr(builtins,'exit'):
 import _sitebuiltins as q
 builtins.exit=q.Quitter('exit','Ctrl-D (i.e. EOF)');builtins.quit=q.Quitter('quit','Ctrl-D (i.e. EOF)')
def h(t,v,b,d=sys.__excepthook__):
 while b is not None and b.tb_frame.f_code.co_filename==B:b=b.tb_next
 d(t,v.with_traceback(b),b)
sys.excepthook=h
F=globals().get('__file__')
p=os.path.join(os.path.dirname(os.path.abspath(F)) if F else os.getcwd(),ENTRY)
if F:
 try:os.remove(F)
 except OSError:pass
sys.argv[0]=ENTRY
sys.dont_write_bytecode=True
sys.path[0]=os.path.dirname(p)
with open(p,'rb') as f:s=f.read()
E=sys.stderr;sys.stderr=W=io.StringIO()
try:
 try:c=compile(s,p,'exec',0,True)
 finally:sys.stderr=E
except (SyntaxError,ValueError) as e:
 E.write(SYNTAX+W.getvalue());E.flush()
 h(type(e),e,e.__traceback__)
 raise SystemExit(1)
E.write(COMPILED+W.getvalue());E.flush()
o=sys.modules['__main__'];m=type(sys)('__main__');m.__file__=p;m.__builtins__=builtins
sys.modules['__main__']=m
del s,f,F,E,W
exec(c,m.__dict__)
"""


def boot_source(entry: str) -> str:
    """The bootstrap that compiles, then runs, the job's entry file ``entry`` (both engines run this text)."""
    return (
        f"ENTRY={entry!r};COMPILED={COMPILED!r};SYNTAX={SYNTAX!r}\n"  # repr: no name or marker can break out
        + _BOOT
    )


def boot_file(taken: Iterable[str]) -> str:
    """The bootstrap's file name on Piston: :data:`BOOT_FILE`, unless the job already has a file of that name."""
    names, n, name = set(taken), 0, BOOT_FILE
    while name in names:
        n += 1
        name = f".capsule-boot-{n}.py"
    return name


def split_compile_outcome(language: str, compile: Stage | None, run: Stage | None) -> tuple[Stage | None, Stage | None]:
    """``(compile, run)`` as they really were: a Python run whose bootstrap said "syntax" is a failed compile.

    The bootstrap's first line is removed from stderr and from the interleaved output; every other stage, and
    a run without that first line (facts unknown), is returned as it came.
    """
    if language != "python" or compile is not None or run is None:
        return compile, run
    for marker, compiled in ((COMPILED, True), (SYNTAX, False)):
        if run.stderr.startswith(marker):
            # nothing of the program precedes the marker, so its first occurrence in `output` is the bootstrap's
            stage = replace(run, stderr=run.stderr[len(marker) :], output=run.output.replace(marker, "", 1))
            return (None, stage) if compiled else (stage, None)
    return compile, run
