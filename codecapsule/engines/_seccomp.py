"""The seccomp filter every sandboxed program runs under, built with libseccomp (``pyseccomp``) as classic BPF.

The filter allows everything except the system calls a student program never needs and an escape would:
new namespaces, mounts and root changes, ptrace and cross-process memory access, the kernel keyring, BPF,
perf events, kernel modules, kexec, io_uring, and a few host-wide administrative calls. They fail with EPERM
(``clone3`` with ENOSYS, so the C library falls back to ``clone``, whose flags the filter can inspect). Syscalls
of other architectures (32-bit ``int 0x80``) kill the process (libseccomp's default for a foreign architecture).
bubblewrap loads the program from a file descriptor (``--seccomp FD``) as the last step before ``execve``.
"""

from __future__ import annotations

import errno
import functools
import os

# Refused outright (EPERM).
REFUSED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at", "quotactl", "acct", "swapon", "swapoff", "reboot",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "iopl", "ioperm", "vhangup",
    "lookup_dcookie", "uselib",
)  # fmt: skip

# clone() flags that create namespaces: clone with any of them is refused (threads and fork stay allowed).
CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}


@functools.cache
def program() -> bytes | None:
    """The filter as BPF bytes, or None where libseccomp or its Python bindings are missing."""
    try:
        import pyseccomp as seccomp  # type: ignore[import-untyped]  # ctypes over libseccomp.so.2 (Debian/Ubuntu: libseccomp2)
    except (ImportError, OSError):
        return None
    try:
        flt = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in REFUSED:
            try:
                flt.add_rule(seccomp.ERRNO(errno.EPERM), name)
            except (RuntimeError, ValueError, OSError):
                continue  # not a system call on this architecture
        for flag in CLONE_NAMESPACE_FLAGS.values():
            flt.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        read_fd, write_fd = os.pipe()
        try:
            with os.fdopen(write_fd, "wb") as out:
                flt.export_bpf(out)
            chunks = []
            while chunk := os.read(read_fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
        return b"".join(chunks)
    except (RuntimeError, ValueError, OSError):
        return None
