"""Hostile programs and the safe outcome each must have, per sandbox mode (shared by the root suite and the
unprivileged driver). Probes of kernel settings only OPEN files for writing and close them: they never write.

A case's ``check(result, caps)`` returns None when the outcome is safe, else what went wrong (a string).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import codecapsule as cc
from codecapsule.engines._sandbox import SandboxCaps

# Every sandbox mode, by the LocalEngine switches that select it; a test skips the modes this machine lacks.
MODES: dict[str, dict[str, bool]] = {
    "full": {"bwrap": True, "cgroups": True},
    "namespaces": {"bwrap": True, "cgroups": False},
    "cgroup": {"bwrap": False, "cgroups": True},
    "rlimits": {"bwrap": False, "cgroups": False},
}


def marker() -> str:
    """A random number to put in a sleeping process's command line and find it again in /proc."""
    return f"{random.randint(100000, 999999)}.{random.randint(100, 999)}"


def running(text: str) -> list[int]:
    """Pids whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


Check = Callable[[cc.Result, SandboxCaps], "str | None"]


@dataclass(frozen=True)
class Case:
    id: str
    language: str
    source: str
    check: Check
    kwargs: dict[str, Any] = field(default_factory=dict)
    needs: Callable[[SandboxCaps], bool] = lambda caps: True  # modes where the sandbox promises this outcome


def _refused(marker: str = "refused") -> Check:
    def check(r: cc.Result, caps: SandboxCaps) -> str | None:
        return None if marker in r.stdout and "ALLOWED" not in r.stdout else f"not refused: {r.stdout!r} {r.stderr!r}"

    return check


def _syscall_refused(r: cc.Result, caps: SandboxCaps) -> str | None:
    """Under seccomp the call fails with EPERM; elsewhere the kernel must refuse it in some way (no privilege,
    no such file): a success is never safe."""
    words = r.stdout.split()
    if not words or words[0] == "ALLOWED" or (caps.seccomp is not None and words[0] != "refused"):
        return f"not refused: {r.stdout!r} {r.stderr[-300:]!r}"
    return None


def _verdict(*verdicts: str, message: str | None = None) -> Check:
    def check(r: cc.Result, caps: SandboxCaps) -> str | None:
        if r.verdict not in verdicts:
            return f"verdict {r.verdict} not in {verdicts}: {r.stdout[-200:]!r} {r.stderr[-300:]!r}"
        if message is not None and (r.run is None or message not in (r.run.message or "")):
            return f"message {r.run.message if r.run else None!r} lacks {message!r}"
        return None

    return check


def _signal(name: str, code: int) -> Check:
    def check(r: cc.Result, caps: SandboxCaps) -> str | None:
        if r.verdict != "signal" or r.run is None or (r.run.signal, r.exit_code) != (name, code):
            return f"{r.verdict} {r.run.signal if r.run else None} {r.exit_code}, not {name} ({code})"
        return None

    return check


def _probe_open_for_write(path: str) -> str:
    # O_WRONLY without O_TRUNC/O_CREAT, then close: never writes the setting
    return (
        "import os\ntry:\n"
        f"    fd = os.open({path!r}, os.O_WRONLY)\n"
        "    os.close(fd)\n    print('ALLOWED')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )


def _syscall(name: str, nr: int, *args: int | str) -> str:
    """Call a system call with arguments that would work if it were allowed (strings become C strings), so a
    refusal with EPERM is the sandbox's, not a bad argument's."""
    call = ", ".join(f"ctypes.c_char_p({a.encode()!r})" if isinstance(a, str) else f"ctypes.c_long({a})" for a in args)
    return (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"rc = libc.syscall(ctypes.c_long({nr}){', ' if call else ''}{call})\n"
        "e = ctypes.get_errno()\n"
        f"print('refused' if rc == -1 and e == 1 else 'failed' if rc == -1 else 'ALLOWED', {name!r}, e)\n"
    )


# Arguments that make each call succeed for a process allowed to make it.
_SYSCALL_ARGS: dict[str, tuple[int | str, ...]] = {
    "unshare": (0x10000000,),
    "setns": (0, 0),  # fd 0 is not a namespace: EINVAL unless refused first
    "mount": ("tmpfs", "/box", "tmpfs", 0, 0),
    "umount2": ("/box", 0),
    "chroot": ("/box",),
    "pivot_root": ("/box", "/box"),
    "ptrace": (0,),  # PTRACE_TRACEME
    "keyctl": (0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": ("user", "capsule", "x", 1, -3),
    "request_key": ("user", "capsule", 0, -3),
    "bpf": (0, 0, 0),
    "perf_event_open": (0, 0, -1, -1, 0),
    "init_module": (0, 0, ""),
    "finit_module": (0, "", 0),
    "delete_module": ("capsule", 0),
    "kexec_load": (0, 0, 0, 0),
    "kexec_file_load": (0, 0, 0, "", 0),
    "open_by_handle_at": (0, 0, 0),
    "userfaultfd": (0,),
}


def _as_root(caps: SandboxCaps) -> bool:
    return caps.root


def _seccomp(caps: SandboxCaps) -> bool:
    return caps.seccomp is not None


def _bwrap(caps: SandboxCaps) -> bool:
    return caps.bwrap is not None


def _cgroup(caps: SandboxCaps) -> bool:
    return caps.cgroups is not None


def _pids_contained(caps: SandboxCaps) -> bool:
    # a pids cgroup, or RLIMIT_NPROC on a uid of the run's own (as root) or on the user's own (not root)
    return caps.cgroups is not None or not caps.root or caps.sandbox_uid is not None


def _not_host_root(r: cc.Result, caps: SandboxCaps) -> str | None:
    # inside view; test_the_program_is_not_root_on_the_host checks the host's view of the same
    return None if r.stdout.split()[:2] not in (["0", "0"], []) and "0" not in r.stdout.split() else f"uid {r.stdout!r}"


def _no_caps(r: cc.Result, caps: SandboxCaps) -> str | None:
    return None if r.stdout.strip() == "0000000000000000" else f"capabilities {r.stdout!r}"


def _no_host_path(r: cc.Result, caps: SandboxCaps) -> str | None:
    return None if "codecapsule-" not in r.stdout and " /box " in r.stdout else f"mountinfo shows {r.stdout!r}"


def _small_diff(r: cc.Result, caps: SandboxCaps) -> str | None:
    if r.verdict != "wrong_answer" or r.diff is None:
        return f"verdict {r.verdict}"
    return None if r.diff.count("\n") < 80 else f"diff of {r.diff.count(chr(10))} lines"


_FORK_BOMB = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass"
_X86_64 = {
    "unshare": 272,
    "setns": 308,
    "mount": 165,
    "chroot": 161,
    "ptrace": 101,
    "keyctl": 250,
    "add_key": 248,
    "request_key": 249,
    "bpf": 321,
    "perf_event_open": 298,
    "init_module": 175,
    "finit_module": 313,
    "delete_module": 176,
    "kexec_load": 246,
    "kexec_file_load": 320,
    "pivot_root": 155,
    "umount2": 166,
    "open_by_handle_at": 304,
    "userfaultfd": 323,
}
_ALWAYS_REFUSED = {
    "mount",
    "chroot",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "pivot_root",
    "umount2",
    "open_by_handle_at",
}

SMALL = {"timeout": 2, "memory": "128MB"}

CASES: list[Case] = [
    # -- 1. escape to host root ------------------------------------------------------------------------------
    Case("core-pattern-open-for-write", "python", _probe_open_for_write("/proc/sys/kernel/core_pattern"), _refused()),
    Case("sysrq-trigger-open-for-write", "python", _probe_open_for_write("/proc/sysrq-trigger"), _refused()),
    Case("proc-sys-vm-open-for-write", "python", _probe_open_for_write("/proc/sys/vm/drop_caches"), _refused()),
    Case(
        "sys-open-for-write",
        "python",
        _probe_open_for_write("/sys/kernel/mm/transparent_hugepage/enabled"),
        _refused(),
    ),
    Case("uid-is-not-root", "python", "import os; print(os.getuid(), os.geteuid())", _not_host_root),
    Case(
        "no-capabilities",
        "python",
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])",
        _no_caps,
        needs=lambda caps: caps.sandbox_uid is not None or not caps.root,
    ),
    Case(
        "host-path-hidden",
        "python",
        "print(open('/proc/self/mountinfo').read())",
        _no_host_path,
        needs=lambda caps: caps.bwrap is not None and caps.root,
    ),
    Case(
        "read-etc-shadow",
        "python",
        "try:\n    open('/etc/shadow').read(); print('ALLOWED')\nexcept OSError: print('refused')",
        _refused(),
        needs=lambda caps: caps.sandbox_uid is not None or not caps.root,
    ),
    *(
        Case(
            f"syscall-{name}",
            "python",
            _syscall(name, nr, *_SYSCALL_ARGS[name]),
            _syscall_refused,
            needs=(lambda caps: True) if name in _ALWAYS_REFUSED else _seccomp,
        )
        for name, nr in _X86_64.items()
    ),
    Case(
        "clone-newuser",
        "python",
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)\n"
        "if pid == 0: os._exit(0)\nprint('refused' if pid == -1 else 'ALLOWED')",
        _refused(),
        needs=_seccomp,
    ),
    Case(
        "unshare-command",
        "python",
        "import subprocess\nr = subprocess.run(['unshare', '-U', 'true'])\n"
        "print('refused' if r.returncode else 'ALLOWED')",
        _refused(),
        needs=_seccomp,
    ),
    Case(
        "tiocsti",
        "python",
        "import fcntl, termios\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('ALLOWED')\n"
        "except OSError: print('refused')",
        _refused(),
    ),
    Case(
        "write-outside-work-dir",
        "python",
        "try:\n    open('/tmp/escaped-by-student', 'w'); print('ALLOWED')\nexcept OSError: print('refused')",
        _refused(),
        needs=_bwrap,
    ),
    Case(
        "network",
        "python",
        "import socket\ns = socket.socket(); s.settimeout(1)\ntry:\n"
        "    s.connect(('127.0.0.1', 22)); print('ALLOWED')\nexcept OSError as e:\n"
        "    print('refused' if e.errno in (101, 111) else 'ALLOWED')",
        _refused(),
        needs=_bwrap,
    ),
    # -- 2. disk ---------------------------------------------------------------------------------------------
    Case(
        "fill-the-disk",
        "python",
        "i = 0\ntry:\n    while True:\n        open(f'f{i}', 'wb').write(b'x' * 8_000_000)\n"
        "        i += 1\nexcept OSError as e: print('stopped', i, e.errno)",
        _verdict("ok", "memory_limit", "signal"),
        kwargs={"timeout": 5, "memory": "256MB"},
        needs=_as_root,
    ),
    Case(
        "one-huge-file",
        "python",
        "open('big', 'wb').write(b'x' * 40_000_000)\nprint('ALLOWED')",
        _verdict("signal", "runtime_error", "memory_limit"),
        kwargs={"limits": {"file_size": "8MB"}},
    ),
    Case(
        "deep-tree",
        "python",
        "import os\nfor _ in range(3000):\n    os.mkdir('a'); os.chdir('a')\n"
        "open('leaf', 'w').write('x'); os.chmod('.', 0o500); print('deep')",
        _verdict("ok"),
    ),
    Case(
        "compile-bomb-c",
        "c",
        "char big[8000000000L] = {1};\nint main(void){ return big[0]; }",
        _verdict("compile_error"),
        kwargs={"limits": {"compile_timeout": 20}},
    ),
    # -- 3. CPU ----------------------------------------------------------------------------------------------
    Case(
        "busy-loop",
        "python",
        "while True: pass",
        _verdict("time_limit", message="CPU time"),
        kwargs={"limits": {"run_cpu_time": 1, "run_timeout": 20}},  # the clock far away: CPU time judges
        needs=_cgroup,
    ),
    Case(
        "sleep",
        "python",
        "import time; time.sleep(30)",
        _verdict("time_limit", message="wall clock"),
        kwargs={"timeout": 1},
    ),
    Case(
        "forked-cpu-bypass",
        "python",
        "import os\nfor _ in range(6):\n    if os.fork() == 0: break\nwhile True: pass",
        _verdict("time_limit", message="CPU time"),
        kwargs={"limits": {"run_cpu_time": 1, "run_timeout": 20}},
        needs=_cgroup,
    ),
    Case(
        "fork-bomb",
        "python",
        _FORK_BOMB,
        _verdict("time_limit", "runtime_error"),
        kwargs={"timeout": 2},
        needs=_pids_contained,
    ),
    Case(
        "thread-bomb",
        "python",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        _verdict("time_limit", "runtime_error"),
        kwargs={"timeout": 2},
        needs=_pids_contained,
    ),
    Case(
        "c-fork-bomb",
        "c",
        "#include <unistd.h>\nint main(void){ for(;;) fork(); }",
        _verdict("time_limit", "runtime_error", "signal"),
        kwargs={"timeout": 2},
        needs=_pids_contained,
    ),
    # -- memory ----------------------------------------------------------------------------------------------
    Case(
        "python-2gb", "python", "x = bytearray(2 * 1024**3)\nprint('allocated')", _verdict("memory_limit"), kwargs=SMALL
    ),
    Case(
        "mmap-touch",
        "python",
        "import mmap\nm = mmap.mmap(-1, 1 << 31)\nfor i in range(0, 1 << 31, 4096): m[i] = 1\nprint('allocated')",
        _verdict("memory_limit", "signal"),
        kwargs=SMALL,
        needs=_cgroup,
    ),
    Case(
        "java-heap-bomb",
        "java",
        "import java.util.*; public class M { public static void main(String[] a) {"
        " List<long[]> l = new ArrayList<>(); while (true) l.add(new long[10_000_000]); } }",
        _verdict("memory_limit"),
        kwargs={"timeout": 10, "memory": "256MB"},
        needs=_cgroup,
    ),
    Case(
        "node-heap-bomb",
        "javascript",
        "const a = []; while (true) a.push(new Array(1e6).fill(1.5));",
        _verdict("memory_limit"),
        kwargs={"timeout": 10, "memory": "256MB"},
        needs=_cgroup,
    ),
    Case(
        "c-malloc-bomb",
        "c",
        "#include <stdlib.h>\n#include <string.h>\nint main(){ for(;;){ char*p=malloc(1<<24);"
        " if(!p) return 3; memset(p,1,1<<24);} }",
        _verdict("memory_limit", "runtime_error"),
        kwargs=SMALL,
    ),
    # -- output ----------------------------------------------------------------------------------------------
    Case(
        "stdout-flood",
        "python",
        "import sys\nwhile True: sys.stdout.write('x' * 65536)",
        _verdict("output_limit"),
        kwargs={"timeout": 5},
    ),
    Case(
        "stderr-flood",
        "python",
        "import sys\nwhile True: sys.stderr.write('x' * 65536)",
        _verdict("output_limit"),
        kwargs={"timeout": 5},
    ),
    # -- 4. spoofed verdicts ---------------------------------------------------------------------------------
    Case("says-bwrap", "python", "import sys; sys.stderr.write('bwrap: x\\n'); sys.exit(1)", _verdict("runtime_error")),
    Case(
        "says-capsule",
        "python",
        "import sys; sys.stderr.write('capsule: x\\n'); sys.exit(125)",
        _verdict("runtime_error"),
    ),
    Case(
        "says-out-of-memory",
        "python",
        "import sys; sys.stderr.write('out of memory\\nMemoryError\\n'); sys.exit(1)",
        _verdict("runtime_error"),
        kwargs=SMALL,
        needs=_cgroup,
    ),
    Case(
        "exit-139-is-not-a-segfault",
        "python",
        "import sys; sys.exit(139)",
        _verdict("runtime_error"),
        needs=lambda caps: caps.bwrap is None or caps.perl is not None,
    ),
    Case("real-segfault", "c", "int main(){ volatile int *p = 0; return *p; }", _signal("SIGSEGV", 139)),
    Case("abort-is-sigabrt", "python", "import os; os.abort()", _signal("SIGABRT", 134)),
    Case(
        "exit-134-is-not-an-abort",
        "c",
        "int main(void){ return 134; }",
        _verdict("runtime_error"),
        needs=lambda caps: caps.bwrap is None or caps.perl is not None,
    ),
    # -- 5. processes left behind ----------------------------------------------------------------------------
    Case(
        "kill-minus-one",
        "python",
        "import os, signal\ntry: os.kill(-1, signal.SIGKILL)\nexcept OSError: pass\nprint('after')",
        _verdict("ok", "signal"),
        needs=_bwrap,
    ),
]
