"""The run JVM's fast start: a CDS archive of the JDK classes classroom programs load, built once per machine.

The JDK's own archive covers what ``java -version`` loads; a student's program also loads Scanner, the collections,
lambdas and string concatenation's invokedynamic machinery. A dynamic archive (``-XX:ArchiveClassesAtExit``) of a
trusted warm-up program that uses them, layered on the JDK's, saves that class loading on every run. It lives in the
engine's cache (:mod:`._cache_dir`): built on the host from our own source (never from a job), named by the JVM's
version and a digest of its files (a JDK upgrade builds a new one), checked against its manifest once per process (a
truncated archive crashes the JVM even with ``-Xshare:auto``), bound read-only into the sandbox. ``-Xshare:auto``
(already in the run flags) makes the JVM ignore an archive that does not fit its flags.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

from . import _cache_dir
from ._toolchains import _JVM_FAST, _SYSTEM_PATH, Toolchain

_ARCHIVE = "run.jsa"

# Exercises what classroom programs use, so their classes (and lambda forms) are in the archive.
WARMUP = """\
import java.util.*;
import java.util.stream.*;

public class Main {
    record Point(int x, int y) {}
    enum Color { RED, GREEN }

    public static void main(String[] args) throws Exception {
        Scanner in = new Scanner(System.in);
        List<Integer> numbers = new ArrayList<>();
        while (in.hasNextInt()) numbers.add(in.nextInt());
        String line = in.hasNextLine() ? in.nextLine() : "";
        numbers.sort(Comparator.reverseOrder());
        Map<String, Integer> counts = new HashMap<>();
        for (String w : line.split("\\\\s+")) counts.merge(w, 1, Integer::sum);
        TreeMap<String, Integer> sorted = new TreeMap<>(counts);
        Deque<Point> points = new ArrayDeque<>(List.of(new Point(1, 2)));
        Set<Color> colors = EnumSet.of(Color.RED);
        String joined = numbers.stream().map(n -> "n" + n).collect(Collectors.joining(","));
        int sum = IntStream.rangeClosed(1, 10).sum();
        StringBuilder sb = new StringBuilder();
        sb.append(Math.sqrt(2.0)).append(' ').append(Arrays.toString(new int[] {3, 1}));
        System.out.println(joined + " " + sum + " " + sorted + points + colors + Optional.of(sb));
        System.out.printf("%d %.2f %s%n", numbers.size(), Math.PI, String.format("%5s", "x"));
        try {
            Object o = null;
            o.hashCode();
        } catch (NullPointerException e) {
            System.err.println(e.getMessage() != null ? "npe" : "npe");
        }
        BufferedReaderCheck.touch();
    }
}

class BufferedReaderCheck {
    static void touch() throws java.io.IOException {
        var reader = new java.io.BufferedReader(new java.io.StringReader("a b"));
        System.out.println(new StringTokenizer(reader.readLine()).countTokens());
    }
}
"""
_WARMUP_STDIN = b"3 1 2\nhello world hello\n"


def _identity(java_path: str, version: str) -> str:
    java = Path(java_path)
    libjvm = java.parent.parent / "lib" / "server" / "libjvm.so"
    facts = [str(java).encode(), version.encode()]
    for f in (java, libjvm):
        try:
            st = f.stat()
        except OSError:
            continue
        facts.append(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return f"java-{version}-{_cache_dir.digest(*facts)}"


def _build_archive(java: str, javac: str, folder: Path) -> None:
    archive = folder / _ARCHIVE
    env = {"PATH": _SYSTEM_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    with tempfile.TemporaryDirectory(prefix="codecapsule-cds-") as src:
        Path(src, "Main.java").write_text(WARMUP)
        steps = (
            [javac, "-proc:none", "-d", ".", "Main.java"],
            [java, *_JVM_FAST, f"-XX:ArchiveClassesAtExit={archive}", "-cp", ".", "Main"],
            # the archive must load (-Xshare:on fails rather than ignoring it) and the program still work
            [java, *_JVM_FAST, "-Xshare:on", f"-XX:SharedArchiveFile={archive}", "-cp", ".", "Main"],
        )
        for argv in steps:
            done = subprocess.run(argv, cwd=src, env={**env, "HOME": src}, input=_WARMUP_STDIN, capture_output=True,
                                  timeout=120)  # fmt: skip
            if done.returncode != 0:
                raise _cache_dir.BuildFailed(f"{argv[0]} exited {done.returncode}: {done.stderr[-500:]!r}")


@functools.cache
def _archive(cache_dir: str, java: str, javac: str, version: str) -> Path | None:
    folder = _cache_dir.entry(cache_dir, f"cds-{_identity(java, version)}", lambda f: _build_archive(java, javac, f))
    return folder / _ARCHIVE if folder is not None else None


def run_options(tc: Toolchain, cache_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(JVM flags, directories to bind read-only) for the run stage: the CDS archive where one could be built."""
    archive = _archive(cache_dir, tc.executables["java"], tc.executables["javac"], tc.version)
    if archive is None or not os.path.isfile(archive):
        return (), ()
    return (f"-XX:SharedArchiveFile={archive}",), (str(archive.parent),)
