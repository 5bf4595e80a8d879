"""The sandbox's PID 1 as a small compiled program: the perl launcher's job (``_sandbox._LAUNCHER``) in ~1 ms less.

Why: a stage's PID 1 forks the program, sets its resource limits, reaps orphans and reports the program's raw wait
status on a pipe ("S<status>", or "E<errno>" when exec failed), so a death by signal n is told apart from exit
status 128+n. perl does that in ~1.8 ms of start-up per stage (measured here); this C program in ~0.3 ms.

It is built once per machine with the system C compiler into the engine's cache (``_cache_dir``: a root-only
directory, every file's digest checked before use), copied into a sealed memfd (nothing can change it after the
check), and executed inside the sandbox as ``/proc/self/fd/<n>``: no bind mount, no file the program can see.
It closes that fd before anything else. Where no compiler, no cache or no exec of a memfd is possible, the engine
keeps the perl launcher (``SandboxCaps.detect`` tries this one first, and keeps it only if it reports ``S0``).

Arguments: its own fd, the report fd, the limits (``resource:soft:hard`` items, comma-separated, ``-`` for none),
then the program's argv. Or, for a sandbox prepared ahead (``_primed``): its own fd, the report fd, ``--serve`` and a
socket's fd, on which it waits for the stage (limits, environment, argv and optionally a stdin fd) before the same
launch; for a compiled language also a second socket's fd, for the compile stage, which a child of PID 1 serves
in the compile's own cgroup before the run stage comes (``compile_stage`` below).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
from pathlib import Path

from . import _cache_dir

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void report(int fd, char kind, int value) {
    char line[32];
    int n = snprintf(line, sizeof line, "%c%d\n", kind, value);
    if (write(fd, line, (size_t)n) < 0) { /* the host then finds no report: nothing else to do */ }
}

/* Fork the program (limits, argv; envp NULL: ours; stdin_fd >= 0: its fd 0), report its wait status, exit. */
static int launch(int st, char *limits, char **argv, char **envp, int stdin_fd) {
    pid_t pid = fork();
    if (pid < 0) return 125;
    if (pid == 0) {
        if (stdin_fd >= 0 && (dup2(stdin_fd, 0) != 0 || close(stdin_fd) != 0)) _exit(125);
        if (strcmp(limits, "-") != 0) {
            for (char *item = strtok(limits, ","); item; item = strtok(NULL, ",")) {
                unsigned long long r, s, h;
                if (sscanf(item, "%llu:%llu:%llu", &r, &s, &h) != 3) _exit(125);
                struct rlimit64 lim = {s, h};
                if (prlimit64(0, (int)r, &lim, NULL) != 0) _exit(125);
            }
        }
        if (envp) environ = envp;  /* execvp looks the program up in the stage's PATH */
        execvp(argv[0], argv);
        int err = errno;
        report(st, 'E', err);
        fprintf(stderr, "capsule: cannot run %s: %s\n", argv[0], strerror(err));
        _exit(127);
    }
    if (stdin_fd >= 0) close(stdin_fd);
    for (;;) {  /* PID 1: reap every orphan until the program itself ends */
        int status;
        pid_t w = waitpid(-1, &status, 0);
        if (w < 0) {
            if (errno == EINTR) continue;
            return 125;
        }
        if (w == pid) {
            report(st, 'S', status);
            return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        }
    }
}

/* Prepared ahead (``_primed``): a stage arrives on a socket as one message of NUL-separated fields — limits,
   number of environment entries, the entries, argv — and up to ``nfds`` SCM_RIGHTS fds (``fds``, -1 where none
   came). Returns 0 with the fields set, 1 when there is no message (the host closed its end), -1 on a bad one. */
static char message[262144];

static int receive(int sock, int *fds, size_t nfds, char **limits, char ***envp, char ***argv) {
    for (size_t i = 0; i < nfds; i++) fds[i] = -1;
    union { struct cmsghdr h; char space[CMSG_SPACE(4 * sizeof(int))]; } control;
    struct iovec iov = {message, sizeof message - 1};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
    if (n <= 0) return 1;
    close(sock);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len <= CMSG_LEN(nfds * sizeof(int)))
            memcpy(fds, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0));
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return -1;
    message[n] = 0;
    size_t count = 1;
    for (ssize_t i = 0; i < n; i++) count += message[i] == 0;
    char **field = calloc(count + 1, sizeof *field);
    if (!field) return -1;
    size_t k = 0;
    for (char *p = message; p <= message + n && k < count; p += strlen(p) + 1) field[k++] = p;
    if (k < 3) return -1;
    long envs = strtol(field[1], NULL, 10);
    if (envs < 0 || (size_t)envs + 3 > k) return -1;
    char **env = calloc((size_t)envs + 1, sizeof *env);
    if (!env) return -1;
    for (long i = 0; i < envs; i++) env[i] = field[2 + i];
    *limits = field[0];
    *envp = env;
    *argv = field + 2 + envs;
    return 0;
}

/* The compile stage's launcher in a compiled language's sandbox (PID 1's child, which the host has moved into the
   compile's own cgroup before any stage): the stage comes with four fds (stdin, stdout, stderr, its report pipe)
   and is launched as PID 1 launches one, as the subreaper of all it starts. Then everything the compile left in
   the namespace is killed (kill(-1): all but PID 1 and this process) and reaped before this process exits, so
   the run stage starts with nothing of the compile alive. */
static int compile_stage(int sock, int run_report) {
    close(run_report);  /* the run stage's report pipe is PID 1's alone */
    int fds[4];
    char *limits, **envp, **argv;
    int got = receive(sock, fds, 4, &limits, &envp, &argv);
    if (got != 0) return got > 0 ? 0 : 125;
    if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0 || fds[3] < 0) return 125;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 125;
    if (dup2(fds[1], 1) != 1 || dup2(fds[2], 2) != 2) return 125;  /* not the run stage's pipes any more */
    close(fds[1]);
    close(fds[2]);
    int code = launch(fds[3], limits, argv, envp, fds[0]);
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {}
    return code;
}

static void on_child(int sig) { (void)sig; }

/* Serve one run stage on ``sock`` (stdin optionally as an fd). With ``compile_sock`` >= 0 (a compiled language),
   first fork the compile stage's launcher on it, tell the host ("C") and, until the run stage comes, reap that
   launcher when it ends (the host removes its cgroup once it is gone). */
static int serve(int st, int sock, int compile_sock) {
    if (compile_sock >= 0) {
        pid_t pid = fork();
        if (pid < 0) return 125;
        if (pid == 0) {
            close(sock);
            _exit(compile_stage(compile_sock, st));
        }
        close(compile_sock);
        sigset_t chld, waiting;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        struct sigaction act = {0};
        act.sa_handler = on_child;  /* not ignored: ppoll returns on it */
        if (sigprocmask(SIG_BLOCK, &chld, &waiting) != 0 || sigaction(SIGCHLD, &act, NULL) != 0) return 125;
        if (send(sock, "C", 1, MSG_NOSIGNAL) != 1) return 0;
        for (;;) {
            struct pollfd p = {sock, POLLIN, 0};
            int r = ppoll(&p, 1, NULL, &waiting);
            int err = errno;  /* before waitpid sets it */
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
            if (r > 0) break;
            if (r < 0 && err != EINTR) return 125;
        }
        act.sa_handler = SIG_DFL;  /* the program gets the default disposition and mask, as cold */
        if (sigaction(SIGCHLD, &act, NULL) != 0 || sigprocmask(SIG_SETMASK, &waiting, NULL) != 0) return 125;
    }
    int stdin_fd;
    char *limits, **envp, **argv;
    int got = receive(sock, &stdin_fd, 1, &limits, &envp, &argv);
    if (got != 0) return got > 0 ? 0 : 125;
    return launch(st, limits, argv, envp, stdin_fd);
}

int main(int argc, char **argv) {
    if (argc < 5) return 125;
    close(atoi(argv[1]));
    prctl(PR_SET_NAME, "capsule-init");  /* run as /proc/self/fd/<n>, it would be listed as "<n>" */
    int st = atoi(argv[2]);
    if (fcntl(st, F_SETFD, FD_CLOEXEC) != 0) return 125;  /* the program never holds the report pipe */
    if (strcmp(argv[3], "--serve") == 0) {
        int sock = atoi(argv[4]);
        int compile_sock = argc > 5 ? atoi(argv[5]) : -1;
        if (fcntl(sock, F_SETFD, FD_CLOEXEC) != 0) return 125;
        if (compile_sock >= 0 && fcntl(compile_sock, F_SETFD, FD_CLOEXEC) != 0) return 125;
        return serve(st, sock, compile_sock);
    }
    return launch(st, argv[3], argv + 4, NULL, -1);
}
"""

_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


@functools.cache
def program_fd(cache_dir: str) -> int | None:
    """A sealed memfd holding the built init (one per process), or None where it cannot be built here."""
    cc = shutil.which("cc", path="/usr/bin:/bin") or shutil.which("gcc", path="/usr/bin:/bin")
    if cc is None:
        return None
    name = f"init-{_cache_dir.digest(SOURCE.encode(), cc.encode())}"
    folder = _cache_dir.entry(cache_dir, name, lambda f: _build(cc, f))
    if folder is None:
        return None
    try:
        data = (folder / "init").read_bytes()
        fd = os.memfd_create("capsule-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except OSError:
        os.close(fd)
        return None
    return fd


def _build(cc: str, folder: Path) -> None:
    """Compile the init into ``folder/init``: static where the C library allows (it then needs nothing of the
    sandbox's /usr), else dynamic."""
    errors = ""
    for static in (["-static"], []):
        done = subprocess.run(
            [cc, "-O2", *static, "-o", str(folder / "init"), "-x", "c", "-"], input=SOURCE.encode(),
            capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            return
        errors = done.stderr.decode(errors="replace")[-500:]
    raise _cache_dir.BuildFailed(f"{cc} could not build the sandbox init: {errors!r}")
