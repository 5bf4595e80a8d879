"""Per-run cgroups for memory and process limits (cgroup v1 memory+pids, or v2), where we may create them.

A run gets its own group; the child joins it *before* exec through a tiny shell prologue (no ``preexec_fn``,
which would make Python fork instead of vfork). At the end every task left in the group is killed and the
group removed, so no grandchild outlives its run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for a v1 controller ("" key for v2), from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


@dataclass(frozen=True)
class CgroupSupport:
    """Where per-run groups can be created: v1 (memory dir, pids dir) or v2 (one dir)."""

    version: int
    memory_parent: Path
    pids_parent: Path
    cpuacct_parent: Path | None = None  # v1 only: CPU time of everything in the run (bwrap hides it from rusage)
    cpu_parent: Path | None = None  # where a CPU quota can be set (v1 cpu controller dir; v2: the same group)

    def create(self, memory: int | None, processes: int | None, cpus: float | None = None) -> RunCgroup:
        """A new group with these limits; ``cpus`` is the most CPUs it may use at once (a CFS quota)."""
        name = f"codecapsule-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        if self.version == 2:
            group = self.memory_parent / name
            group.mkdir()
            run = RunCgroup(self, (group,))
        else:
            mem, pids = self.memory_parent / name, self.pids_parent / name
            mem.mkdir()
            try:
                pids.mkdir()
            except OSError:
                mem.rmdir()
                raise
            dirs = [mem, pids]
            if self.cpuacct_parent is not None:
                try:
                    (self.cpuacct_parent / name).mkdir()
                    dirs.append(self.cpuacct_parent / name)
                except OSError:
                    pass  # CPU time then comes from rusage
            if cpus is not None and self.cpu_parent is not None and self.cpu_parent != self.cpuacct_parent:
                try:
                    (self.cpu_parent / name).mkdir()
                    dirs.append(self.cpu_parent / name)
                except OSError:
                    pass  # no quota: the CPU-time limit still holds
            run = RunCgroup(self, tuple(dirs))
        try:
            run.set_limits(memory, processes, cpus)
        except OSError:
            run.remove()
            raise
        return run


_PERIOD_US = 100_000


def _write(path: Path, value: int | str) -> None:
    path.write_text(str(value))


def _write_try(path: Path, value: int | str) -> None:
    with contextlib.suppress(OSError):
        path.write_text(str(value))


class RunCgroup:
    """One run's group(s). ``procs_files`` are what the child's prologue writes its pid into."""

    def __init__(self, support: CgroupSupport, dirs: tuple[Path, ...]) -> None:
        self.support = support
        self.dirs = dirs

        self._cpu_base = 0.0  # CPU time used before the stage began (a prepared launcher's own start-up)

    def set_limits(self, memory: int | None, processes: int | None, cpus: float | None = None) -> None:
        """Set (or tighten) the group's limits; also on a group a process already waits in (``_standby``)."""
        name = self.dirs[0].name
        if self.support.version == 2:
            group = self.dirs[0]
            if memory is not None:
                _write(group / "memory.max", memory)
                _write_try(group / "memory.swap.max", 0)
            if processes is not None:
                _write(group / "pids.max", processes)
            if cpus is not None and self.support.cpu_parent is not None:
                _write(group / "cpu.max", f"{int(cpus * _PERIOD_US)} {_PERIOD_US}")
            return
        mem, pids = self.dirs[0], self.dirs[1]
        if cpus is not None and self.support.cpu_parent is not None:
            quota_dir = self.support.cpu_parent / name
            _write_try(quota_dir / "cpu.cfs_period_us", _PERIOD_US)
            _write_try(quota_dir / "cpu.cfs_quota_us", int(cpus * _PERIOD_US))
        if memory is not None:
            _write(mem / "memory.limit_in_bytes", memory)
            _write_try(mem / "memory.memsw.limit_in_bytes", memory)  # no escaping into swap
        if processes is not None:
            _write(pids / "pids.max", processes)

    def start_accounting(self) -> None:
        """From now on ``cpu_time`` counts the stage's CPU only (not what ran in the group before it began)."""
        self._cpu_base = 0.0
        self._cpu_base = self.cpu_time() or 0.0

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(str(d / "cgroup.procs") for d in self.dirs)

    @property
    def _memory_dir(self) -> Path:
        return self.dirs[0]

    def peak_memory(self) -> int | None:
        name = "memory.peak" if self.support.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self._memory_dir / name).read_text())
        except (OSError, ValueError):
            return None

    def cpu_time(self) -> float | None:
        """Seconds of CPU used by every task that ran in the group, or None where it is not accounted."""
        try:
            if self.support.version == 2:
                for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6 - self._cpu_base
                return None
            acct = [d for d in self.dirs if d.parent == self.support.cpuacct_parent]
            return int((acct[0] / "cpuacct.usage").read_text()) / 1e9 - self._cpu_base if acct else None
        except (OSError, ValueError):
            return None

    def oom_killed(self) -> bool:
        """Whether the kernel killed a task of this group for exceeding the memory limit."""
        name = "memory.events" if self.support.version == 2 else "memory.oom_control"
        try:
            text = (self._memory_dir / name).read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip() not in ("", "0"):
                return True
        if self.support.version == 1:
            # kernels without the oom_kill counter: the limit was hit at least once
            with contextlib.suppress(OSError, ValueError):
                return "oom_kill " not in text and int((self._memory_dir / "memory.failcnt").read_text()) > 0
        return False

    def pids(self) -> list[int]:
        """The processes in the group now."""
        pids: list[int] = []
        for d in self.dirs:
            with contextlib.suppress(OSError):
                pids.extend(int(p) for p in (d / "cgroup.procs").read_text().split())
        return pids

    def kill_all(self) -> bool:
        """Kill every live task in the group; True when none is left alive. Zombies are skipped: they are dead
        already and leave the group once their parent (possibly PID 1) reaps them."""
        if self.support.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", 1)
        for _ in range(100):  # bounded: the pids limit keeps a fork loop from outrunning us
            live = [pid for pid in self.pids() if _alive(pid)]
            if not live:
                return True
            for pid in live:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            os.sched_yield()
        return False

    def remove(self) -> None:
        """Kill what is left and remove the group. A group still held by unreaped zombies is remembered and
        removed by a later run instead of blocking this one."""
        self.kill_all()
        _STALE.update(self.dirs)
        for d in list(_STALE):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                continue
            _STALE.discard(d)


_STALE: set[Path] = set()


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a process from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def _alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def detect(parent: str | None = None) -> CgroupSupport | None:
    """Cgroup support for per-run groups, or None (no cgroupfs, no controllers, nothing we may write).

    Runs get their groups under this process's own group — or, for a normal user, under the top of the subtree
    delegated to them (systemd's ``Delegate=`` hands ``user@UID.service`` to its user by ownership), or under
    ``parent`` (a cgroup path as in /proc/self/cgroup, the same in every v1 hierarchy) when one is given."""
    if (_ROOT / "cgroup.controllers").exists():  # pure v2
        own = _own_path("")
        if own is None and parent is None:
            return None
        base = _base(_ROOT, own or "/", parent)
        try:
            controllers = (base / "cgroup.subtree_control").read_text().split()
        except OSError:
            return None
        if not {"memory", "pids"} <= set(controllers):
            return None
        return _probe(CgroupSupport(2, base, base, cpu_parent=base if "cpu" in controllers else None))
    mem_own, pids_own = _own_path("memory"), _own_path("pids")
    if (mem_own is None or pids_own is None) and parent is None:
        return None
    mem = _base(_ROOT / "memory", mem_own or "/", parent)
    pids = _base(_ROOT / "pids", pids_own or "/", parent)
    if not (mem / "memory.limit_in_bytes").exists() or (not (pids / "pids.max").exists() and pids != _ROOT / "pids"):
        return None
    cpu_own = _own_path("cpuacct")
    cpuacct = _base(_ROOT / "cpuacct", cpu_own, parent) if cpu_own is not None else None
    if cpuacct is not None and not (cpuacct / "cpuacct.usage").exists():
        cpuacct = None
    cpu_own = _own_path("cpu")
    cpu = _base(_ROOT / "cpu", cpu_own, parent) if cpu_own is not None else None
    if cpu is not None and not (cpu / "cpu.cfs_quota_us").exists():
        cpu = None
    if cpu is not None and cpuacct is not None and cpu.resolve() == cpuacct.resolve():
        cpu = cpuacct  # co-mounted cpu,cpuacct: one directory serves both
    return _probe(CgroupSupport(1, mem, pids, cpuacct, cpu))


def _base(mount: Path, own: str, parent: str | None) -> Path:
    """Where a hierarchy's run groups go: ``parent``, else our own group (root), else our delegated subtree."""
    if parent is not None:
        return mount / parent.strip("/")
    here = mount / own.lstrip("/")
    if os.geteuid() == 0:
        return here
    return delegated_top(mount, here) or here


def delegated_top(mount: Path, here: Path) -> Path | None:
    """The topmost group from ``here`` up that this user owns: where the subtree delegated to them starts."""
    uid, top = os.geteuid(), None
    group = here
    while group != mount and mount in group.parents:
        try:
            if group.stat().st_uid != uid:
                break
        except OSError:
            break
        top, group = group, group.parent
    return top


def sweep(support: CgroupSupport) -> int:
    """Kill and remove the groups of engines whose process is gone (SIGKILLed mid-run); returns how many."""
    parents = {support.memory_parent, support.pids_parent, support.cpuacct_parent, support.cpu_parent}
    removed = 0
    for parent in parents:
        if parent is None:
            continue
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            parts = entry.name.split("-")
            if len(parts) != 3 or parts[0] != "codecapsule" or not parts[1].isdigit() or _pid_exists(int(parts[1])):
                continue
            group = RunCgroup(support, (Path(entry.path),))
            group.kill_all()
            with contextlib.suppress(OSError):
                os.rmdir(entry.path)
                removed += 1
    return removed


def _pid_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _probe(support: CgroupSupport) -> CgroupSupport | None:
    try:
        group = support.create(memory=64 * 1024 * 1024, processes=8)
    except OSError:
        return None
    try:
        group.remove()
    except OSError:
        return None
    return support
