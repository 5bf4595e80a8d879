"""The Piston double behaves like real Piston's runtimes (piston.md), raw over HTTP — not like the local engine.

These are the observations of issue 10; if the double drifted back to "runs like the laptop", parity tests could
no longer fail, so each one is pinned here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.piston import PistonTestServer


@pytest.fixture(scope="module")
def server() -> Iterator[PistonTestServer]:
    with PistonTestServer() as s:
        yield s


def execute(server: PistonTestServer, language: str, files: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/v2/execute", json={"language": language, "version": "*", "files": files, **extra}, timeout=30
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def utf8(name: str, content: str) -> dict[str, str]:
    return {"name": name, "content": content, "encoding": "utf8"}


def b64(name: str, content: str) -> dict[str, str]:
    return {"name": name, "content": base64.b64encode(content.encode()).decode(), "encoding": "base64"}


MAIN_C = '#include <stdio.h>\n#include "util.h"\nint main(void){ printf("%d\\n", twice(21)); return 0; }\n'
UTIL_H = "static int twice(int n) { return 2 * n; }\n"


def test_gcc_renames_every_utf8_file_and_a_failed_build_is_copied_into_run(server: PistonTestServer) -> None:
    data = execute(server, "c", [utf8("main.c", MAIN_C), utf8("util.h", UTIL_H)])
    assert data["compile"]["code"] == 1 and data["compile"]["status"] == "RE"
    assert "main.c.c:2:10: fatal error: util.h" in data["compile"]["stderr"]
    assert data["compile"]["stderr"].rstrip().endswith("chmod: cannot access 'a.out': No such file or directory")
    assert data["run"] == data["compile"]


def test_base64_files_are_left_alone(server: PistonTestServer) -> None:
    data = execute(server, "c", [utf8("main.c", MAIN_C), b64("util.h", UTIL_H), b64("data.txt", "not C")])
    assert data["compile"]["code"] == 0 and data["run"]["stdout"] == "42\n"


def test_a_data_file_sent_as_utf8_is_compiled(server: PistonTestServer) -> None:
    data = execute(server, "c", [utf8("main.c", "int main(void){return 0;}"), utf8("data.txt", "40 2")])
    assert "data.txt.c" in data["compile"]["stderr"] and data["compile"]["code"] != 0


def test_java_runs_the_first_top_level_class_of_the_first_file_only(server: PistonTestServer) -> None:
    helper_first = "class Pair {}\npublic class Main { public static void main(String[] a) { } }"
    data = execute(server, "java", [utf8("Main.java", helper_first)])
    assert "compile" not in data
    assert data["run"]["stderr"] == "error: can't find main(String[]) method in class: Pair\n"
    assert (data["run"]["code"], data["run"]["status"]) == (1, "RE")
    uses_helper = "public class Main { public static void main(String[] a) { System.out.println(Helper.X); } }"
    data = execute(
        server, "java", [utf8("Main.java", uses_helper), utf8("Helper.java", "class Helper { static int X = 1; }")]
    )
    assert "Main.java.java:1: error: cannot find symbol" in data["run"]["stderr"]
    assert data["run"]["stderr"].endswith("error: compilation failed\n")


def test_python_runs_the_first_file_with_siblings_importable_and_stdin_always_ends_in_newline(
    server: PistonTestServer,
) -> None:
    files = [utf8("main.py", "import helper, sys; print(helper.X, repr(sys.stdin.read()))"), utf8("helper.py", "X = 1")]
    assert execute(server, "python", files)["run"]["stdout"] == "1 '\\n'\n"
    assert execute(server, "python", files, stdin="a")["run"]["stdout"] == "1 'a\\n'\n"


def test_memory_kill_is_a_sigkill_at_the_limit(server: PistonTestServer) -> None:
    limit = 64 * 1024 * 1024
    run = execute(server, "python", [utf8("main.py", "x = b'x' * (256 << 20)")], run_memory_limit=limit)["run"]
    assert (run["status"], run["signal"], run["code"], run["memory"]) == ("SG", "SIGKILL", None, limit)


def test_output_cap_drops_the_chunk_that_crossed_it(server: PistonTestServer) -> None:
    run = execute(server, "python", [utf8("main.py", "print('x' * 5000)")])["run"]
    assert (run["status"], run["message"], run["stdout"], run["code"]) == ("OL", "stdout length exceeded", "", None)


def test_a_signal_shows_as_a_shell_exit_status(server: PistonTestServer) -> None:
    run = execute(server, "c", [utf8("main.c", "int main(void){ volatile int *p = 0; return *p; }")])["run"]
    assert (run["code"], run["signal"], run["status"]) == (139, None, "RE")


def test_limits_above_the_configured_ones_are_refused(server: PistonTestServer) -> None:
    r = httpx.post(
        f"{server.url}/api/v2/execute",
        json={"language": "python", "version": "*", "files": [utf8("a.py", "")], "run_timeout": 5000},
    )
    assert (r.status_code, r.json()) == (400, {"message": "run_timeout cannot exceed the configured limit of 3000"})
