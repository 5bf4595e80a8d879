"""Local toolchains: where each compiler/interpreter lives and the exact commands for each stage.

Everything is launched by absolute path with a clean environment (a pyenv shim or a ``.pth`` in site-packages can
cost 40–90 ms per Python start; NODE_EXTRA_CA_CERTS alone adds ~35 ms to Node).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .._errors import ToolchainMissing
from .._java import entry_point as java_entry_point
from .._java import scan as scan_java
from .._jobs import Job
from .._languages import is_compiled_source
from ._python_boot import boot_source

# Standard places only: the user's PATH may hold shims and wrappers that are slow or not what we want.
_SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

# What to install when a toolchain is missing (Debian/Ubuntu package names).
_INSTALL_HINT = {
    "python": "python3",
    "javascript": "nodejs",
    "java": "default-jdk-headless (javac and java)",
    "c": "gcc",
    "c++": "g++",
}

# JVM flags that make short programs start ~30% faster and keep the JVM from writing outside the work dir.
_JVM_FAST = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto")


# javac's compile profile. -proc:none: no annotation processing, so a processor the job ships (a class plus
# META-INF/services/javax.annotation.processing.Processor) never runs code inside the compiler.
JAVAC_FLAGS: tuple[str, ...] = ("-proc:none", "-encoding", "UTF-8", "-d", ".")


def _which(name: str) -> str | None:
    found = shutil.which(name, path=_SYSTEM_PATH)
    return os.path.realpath(found) if found else None


@dataclass(frozen=True)
class Toolchain:
    language: str
    executables: dict[str, str]  # role → absolute path ("python", "node", "javac", "java", "cc")
    version: str

    @property
    def roots(self) -> tuple[str, ...]:
        """Directories that must be visible (read-only) inside the sandbox for these executables to work."""
        roots = set()
        for path in self.executables.values():
            p = Path(path)
            # a JDK or a pyenv Python lives in its own prefix: bind the prefix, not just bin/
            prefix = p.parent.parent if p.parent.name == "bin" else p.parent
            roots.add(str(prefix))
        return tuple(sorted(roots))


def _version_of(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, env={"PATH": _SYSTEM_PATH})
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def find(language: str) -> Toolchain:
    """The toolchain for a language, or :class:`ToolchainMissing` naming what to install."""
    needed = {
        "python": ("python3",),
        "javascript": ("node",),
        "java": ("javac", "java"),
        "c": ("gcc",),
        "c++": ("g++",),
    }[language]
    paths: dict[str, str] = {}
    for tool in needed:
        path = _which(tool)
        if path is None:
            raise ToolchainMissing(
                f"{language} cannot run locally: '{tool}' is not installed. Install {_INSTALL_HINT[language]} "
                "(e.g. `sudo apt-get install " + _INSTALL_HINT[language].split()[0] + "`), or configure a Piston "
                "endpoint (CODECAPSULE_PISTON_URL) to run it remotely."
            )
        paths[tool] = path
    first = paths[needed[0]]
    version = {
        "python": lambda: _version_of([first, "--version"], r"Python (\S+)"),
        "javascript": lambda: _version_of([first, "--version"], r"v(\S+)"),
        "java": lambda: _version_of([paths["java"], "-version"], r'version "([^"]+)"'),
        "c": lambda: _version_of([first, "-dumpfullversion"], r"(\S+)"),
        "c++": lambda: _version_of([first, "-dumpfullversion"], r"(\S+)"),
    }[language]()
    return Toolchain(language, paths, version)


@dataclass(frozen=True)
class StagePlan:
    argv: list[str]
    env: dict[str, str]
    sources: tuple[str, ...] = ()  # a compile plan's source files (the warm javac compiles the same ones)


def _base_env(workdir: str) -> dict[str, str]:
    return {"PATH": _SYSTEM_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def java_main_class(job: Job) -> str:
    """The class to launch, by the one rule both engines follow (:mod:`codecapsule._java`), package-qualified."""
    sources = [f for f in job.files if f is job.files[0] or (isinstance(f.content, str) and f.name.endswith(".java"))]
    scanned = [scan_java(f.content) for f in sources if isinstance(f.content, str)]
    found = java_entry_point(scanned)
    if found is None:
        return job.files[0].name.removesuffix(".java")
    index, jtype = found
    package = scanned[index].package
    return f"{package}.{jtype.name}" if package else jtype.name


# THE compile profile, one for both engines. Piston's gcc package compiles with a fixed script
# (`gcc -std=c11 *.c -lm`, `g++ -std=c++17 *.cpp`): no optimisation and no flags a request can add. So the local
# engine compiles that way too — ISO C11 / C++17 (not the GNU dialects), -O0, the same top-level sources Piston's
# `*.c` glob takes — and the warnings of WARNING_FLAGS reach Piston's gcc through each source's prelude
# (`#pragma GCC diagnostic warning "-Wall"`, then `#line 1 "main.c"` so lines and file names stay the student's).
# docs/local-engine.md says so.
COMPILE_PROFILE: dict[str, tuple[str, ...]] = {"c": ("-std=c11",), "c++": ("-std=c++17",)}
WARNING_FLAGS: tuple[str, ...] = ("-Wall",)


def source_prelude(name: str) -> str:
    """What goes before a C/C++ source sent to Piston so its fixed gcc script warns as the local engine does."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    pragmas = "".join(f'#pragma GCC diagnostic warning "{flag}"\n' for flag in WARNING_FLAGS)
    return f'{pragmas}#line 1 "{quoted}"\n'


LINK_FLAGS: dict[str, tuple[str, ...]] = {"c": ("-lm",), "c++": ()}
_COMPILERS = {"c": "gcc", "c++": "g++"}
# the compiler proper behind each driver (its identity is part of a compile cache key and a PCH manifest)
_COMPILER_PROPER = {"c": "cc1", "c++": "cc1plus"}
_HEADER_LANGUAGE = {"c": "c-header", "c++": "c++-header"}


def compile_flags(language: str) -> tuple[str, ...]:
    """The flags every C/C++ compile gets: the profile and its warnings (a precompiled header is built with the
    same, or gcc would not use it)."""
    return (*COMPILE_PROFILE[language], *WARNING_FLAGS, "-pipe")


def compiler(tc: Toolchain, language: str) -> str:
    return tc.executables[_COMPILERS[language]]


_IDENTITIES: dict[tuple[str, str], dict[str, object]] = {}


def compiler_identity(tc: Toolchain, language: str) -> dict[str, object]:
    """What tells one C/C++ toolchain from another: its version and the driver's and compiler proper's files
    (looked up once per process, as the toolchain itself is)."""
    cc = compiler(tc, language)
    known = _IDENTITIES.get((cc, tc.version))
    if known is not None:
        return known
    proper = subprocess.run(
        [cc, f"-print-prog-name={_COMPILER_PROPER[language]}"], capture_output=True, text=True, timeout=20,
        env={"PATH": _SYSTEM_PATH},
    ).stdout.strip()  # fmt: skip
    files: dict[str, list[int] | None] = {}
    for path in (cc, proper):
        try:
            info = os.stat(path)
            files[os.path.realpath(path)] = [info.st_size, info.st_mtime_ns, info.st_ino]
        except OSError:
            files[path] = None
    identity: dict[str, object] = {"version": tc.version, "files": files}
    _IDENTITIES[(cc, tc.version)] = identity
    return identity


def pch_build_plan(tc: Toolchain, language: str, header: str, output: str, workdir: str) -> StagePlan:
    """The command that precompiles ``header`` (an absolute path) into ``output`` with the compile profile's flags."""
    argv = [compiler(tc, language), *compile_flags(language), "-x", _HEADER_LANGUAGE[language], header, "-o", output]
    return StagePlan(argv, _base_env(workdir))


def program_stdin(stdin: str) -> str:
    """THE stdin rule, one for both engines: the program's input always ends with a newline, also when empty.

    Piston adds it to every request (so ``input()`` with no stdin reads ``''``, never EOFError); the local engine
    follows the same rule.
    """
    return stdin if stdin.endswith("\n") else stdin + "\n"


# Python starts without `site` (no host site-packages or .pth hooks, ~4 ms less) through the bootstrap both engines
# share (:mod:`._python_boot`: compiled-or-syntax-error first, then run as a script would). `-E -s` keep
# environment variables and the user's site out.


def compile_plan(tc: Toolchain, job: Job, workdir: str) -> StagePlan | None:
    """The compile command, or None for interpreted languages."""
    env = _base_env(workdir)
    names = [f.name for f in job.files]
    if job.language in COMPILE_PROFILE:
        sources = [n for n in names if is_compiled_source(job.language, n)]
        cc = compiler(tc, job.language)
        return StagePlan([cc, *compile_flags(job.language), "-o", "main", *sources, *LINK_FLAGS[job.language]], env)
    if job.language == "java":
        sources = [n for n in names if n.endswith(".java")]
        jflags = [f"-J{f}" for f in _JVM_FAST]
        return StagePlan([tc.executables["javac"], *jflags, *JAVAC_FLAGS, *sources], env, tuple(sources))
    return None


def run_plan(
    tc: Toolchain, job: Job, workdir: str, memory: int | None, jvm_extra: tuple[str, ...] = ()
) -> StagePlan:
    """The run command; ``jvm_extra``: more JVM flags (the warm paths' CDS archive, ``_jvm_fast``)."""
    env = _base_env(workdir)
    mb = max(32, int(memory * 0.6) // (1024 * 1024)) if memory else None
    if job.language == "python":
        argv = [tc.executables["python3"], "-E", "-s", "-S", "-B", "-c", boot_source(job.files[0].name), *job.args]
        return StagePlan(argv, env)
    if job.language == "javascript":
        heap = [f"--max-old-space-size={mb}"] if mb else []
        return StagePlan([tc.executables["node"], *heap, job.files[0].name, *job.args], env)
    if job.language == "java":
        heap = [f"-Xmx{mb}m", f"-XX:MaxMetaspaceSize={max(32, mb // 4)}m"] if mb else []
        java = [tc.executables["java"], *_JVM_FAST, *jvm_extra, *heap]
        return StagePlan([*java, "-cp", ".", java_main_class(job), *job.args], env)
    if job.language in ("c", "c++"):
        return StagePlan(["./main", *job.args], env)
    raise ToolchainMissing(f"no local runner for {job.language}")  # pragma: no cover - registry guards this


# Languages whose runtimes reserve far more address space than they use: RLIMIT_AS would break them, their own
# heap flags (above) and the memory cgroup limit them instead.
RESERVES_ADDRESS_SPACE = frozenset({"java", "javascript"})
