"""What each layer of a sandboxed launch adds to a Python hello-world: prints medians and ratios to the bare program,
all variants alternating in the same run (so machine noise hits each alike).

Layers, cumulative: bubblewrap with ``/`` read-only; the engine's bwrap command (its binds, ``/proc``, ``/dev``,
the work directory); its seccomp filter; the perl PID 1; the compiled PID 1 (``engines/_init``) instead. Run as the
engine would (as root: bubblewrap as root in its user namespace, without ``setpriv`` or cgroups — those are
measured by ``bench_local``).

    python -m bench.bench_launch [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

from codecapsule._settings import local_cache_dir
from codecapsule.engines._sandbox import SandboxCaps, _bwrap_command, _seccomp_fd

# the system's python (the sandbox sees /usr, not a virtualenv)
HELLO = [os.path.realpath(shutil.which("python3", path="/usr/bin:/bin") or "python3"), "-E", "-s", "-S", "-B", "-c",
         "print(42)"]  # fmt: skip

Launch = tuple[list[str], tuple[int, ...], list[int]]  # command, fds to pass, fds to close afterwards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    caps = SandboxCaps.detect(use_cgroups=False, cache_dir=local_cache_dir())
    if caps.bwrap is None:
        sys.exit("bubblewrap is not usable here: nothing to measure")
    bwrap = caps.bwrap
    workdir = tempfile.mkdtemp(prefix="bench-launch-")
    os.chmod(workdir, 0o777)  # bubblewrap's root in its user namespace is not our uid's owner of it

    def engine(variant: SandboxCaps, pid1: bool) -> Callable[[], Launch]:
        def launch() -> Launch:
            status_r, status_w = os.pipe()
            block_r, block_w = os.pipe()
            os.write(block_w, b"1")
            exit_r, exit_w = os.pipe()
            seccomp = _seccomp_fd(variant)
            cmd = _bwrap_command(
                variant, HELLO, workdir, (), status_w, block_r, seccomp, [],
                exit_fd=exit_w if pid1 else None, init_fd=variant.init if pid1 else None,
            )  # fmt: skip
            extra = tuple(fd for fd in (seccomp, variant.init if pid1 else None) if fd is not None)
            return cmd, (status_w, block_r, exit_w, *extra), [status_r, status_w, block_r, block_w, exit_r, exit_w]

        return launch

    plain = replace(caps, setpriv=None, sandbox_uid=None, seccomp=None, perl=None, init=None)
    variants: dict[str, Callable[[], Launch]] = {
        "bare": lambda: (HELLO, (), []),
        "bwrap, / read-only": lambda: ([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--", *HELLO], (), []),
        "engine's bwrap command": engine(plain, False),
        "+ seccomp": engine(replace(plain, seccomp=caps.seccomp), False),
    }
    filtered = replace(plain, seccomp=caps.seccomp, perl=caps.perl)
    if caps.perl is not None:
        variants["+ perl PID 1"] = engine(filtered, True)
    if caps.init is not None:
        variants["+ compiled PID 1"] = engine(replace(filtered, init=caps.init), True)
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for i in range(args.runs + 2):  # the first two warm caches
            for name, make in variants.items():
                cmd, fds, opened = make()
                started = time.perf_counter()
                done = subprocess.run(cmd, pass_fds=fds, capture_output=True, cwd=workdir, check=False)
                elapsed = time.perf_counter() - started
                for fd in opened:
                    os.close(fd)
                assert done.stdout == b"42\n", (name, done)
                if i >= 2:
                    times[name].append(elapsed)
    finally:
        shutil.rmtree(workdir)
    base = statistics.median(times["bare"])
    print(f"runs per variant: {args.runs}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<24} {'ms':>7} {'ratio':>7} {'min ms':>7}")
    for name, got in times.items():
        median = statistics.median(got)
        print(f"{name:<24} {median * 1000:7.2f} {median / base:6.2f}x {min(got) * 1000:7.2f}")


if __name__ == "__main__":
    main()
