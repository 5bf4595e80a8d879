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
from .._jobs import Job

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


def _base_env(workdir: str) -> dict[str, str]:
    return {"PATH": _SYSTEM_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


_JAVA_CLASS = re.compile(r"\b(?:class|record|enum|interface)\s+([A-Za-z_$][\w$]*)")
_JAVA_MAIN = re.compile(r"\bstatic\s+(?:public\s+)?void\s+main\s*\(")


def java_main_class(job: Job) -> str:
    """The class to launch: the public class (the entry file is named after it), else the class declaring ``main``."""
    name = job.files[0].name.removesuffix(".java")
    source = job.source
    if name != "Main" or re.search(r"\bpublic\s+(?:final\s+)?class\s+Main\b", source):
        return name
    main = _JAVA_MAIN.search(source)
    declared = [m.group(1) for m in _JAVA_CLASS.finditer(source) if main is None or m.start() < main.start()]
    return declared[-1] if declared else name


def compile_plan(tc: Toolchain, job: Job, workdir: str) -> StagePlan | None:
    """The compile command, or None for interpreted languages."""
    env = _base_env(workdir)
    names = [f.name for f in job.files]
    if job.language == "c":
        sources = [n for n in names if n.endswith(".c")]
        return StagePlan([tc.executables["gcc"], "-O2", "-pipe", "-std=gnu17", "-o", "main", *sources, "-lm"], env)
    if job.language == "c++":
        sources = [n for n in names if n.endswith((".cpp", ".cc", ".cxx"))]
        return StagePlan([tc.executables["g++"], "-O2", "-pipe", "-std=gnu++17", "-o", "main", *sources, "-lm"], env)
    if job.language == "java":
        sources = [n for n in names if n.endswith(".java")]
        jflags = [f"-J{f}" for f in _JVM_FAST]
        return StagePlan([tc.executables["javac"], *jflags, "-encoding", "UTF-8", "-d", ".", *sources], env)
    return None


def run_plan(tc: Toolchain, job: Job, workdir: str, memory: int | None) -> StagePlan:
    env = _base_env(workdir)
    mb = max(32, int(memory * 0.6) // (1024 * 1024)) if memory else None
    if job.language == "python":
        return StagePlan([tc.executables["python3"], "-I", "-S", "-B", job.files[0].name, *job.args], env)
    if job.language == "javascript":
        heap = [f"--max-old-space-size={mb}"] if mb else []
        return StagePlan([tc.executables["node"], *heap, job.files[0].name, *job.args], env)
    if job.language == "java":
        heap = [f"-Xmx{mb}m", f"-XX:MaxMetaspaceSize={max(32, mb // 4)}m"] if mb else []
        return StagePlan([tc.executables["java"], *_JVM_FAST, *heap, "-cp", ".", java_main_class(job), *job.args], env)
    if job.language in ("c", "c++"):
        return StagePlan(["./main", *job.args], env)
    raise ToolchainMissing(f"no local runner for {job.language}")  # pragma: no cover - registry guards this


# Languages whose runtimes reserve far more address space than they use: RLIMIT_AS would break them, their own
# heap flags (above) and the memory cgroup limit them instead.
RESERVES_ADDRESS_SPACE = frozenset({"java", "javascript"})
