"""piston_shape: what the client sends so Piston's runtimes do the right thing (pure functions, no server)."""

from __future__ import annotations

import base64

from codecapsule import Job
from codecapsule._java import entry_point, scan
from codecapsule.engines._toolchains import java_main_class, program_stdin
from codecapsule.engines.piston_shape import shape


def test_c_sends_only_real_sources_as_code_files_and_maps_names_back() -> None:
    job = Job.create(
        "int main(void){return 0;}",
        "c",
        files={
            "util.h": "int f(void);",
            "util.c": "int f(void){return 1;}",
            "data.txt": "1 2",
            "lib/x.c": "",
            "img.bin": b"\x00",
        },
    )
    shaped = shape(job)
    encodings = {f["name"]: f["encoding"] for f in shaped.files}
    assert encodings == {
        "main.c": "utf8",
        "util.c": "utf8",
        "util.h": "base64",
        "data.txt": "base64",
        "lib/x.c": "base64",
        "img.bin": "base64",
    }
    assert base64.b64decode(next(f["content"] for f in shaped.files if f["name"] == "util.h")) == b"int f(void);"
    stderr = (
        "main.c.c: In function 'main':\nmain.c.c:3:5: error: x\nIn file included from util.c.c:1:\n"
        "chmod: cannot access 'a.out': No such file or directory\n"
    )
    assert (
        shaped.restore(stderr) == "main.c: In function 'main':\nmain.c:3:5: error: x\nIn file included from util.c:1:\n"
    )


def test_java_helper_before_public_class_is_reordered_with_lines_kept() -> None:
    source = (
        "import java.util.*;\n\nclass Pair { }\n\npublic class Solution {\n"
        "  public static void main(String[] a) {\n    int x = ;\n  }\n}\n"
    )
    job = Job.create(source, "java")
    shaped = shape(job)
    (sent,) = shaped.files
    unit = sent["content"]
    assert sent["name"] == "Solution.java"
    first = scan(unit).types[0]
    assert first.name == "Solution" and first.has_main  # the launcher starts the first top-level class
    assert unit.splitlines()[0] == "import java.util.*;"
    bad_line = next(i for i, line in enumerate(unit.splitlines(), 1) if "int x = ;" in line)
    assert (
        shaped.restore(
            f"Solution.java.java:{bad_line}: error: illegal start of expression\nerror: compilation failed\n"
        )
        == "Solution.java:7: error: illegal start of expression\n"
    )


def test_java_files_are_merged_and_their_own_packages_dropped() -> None:
    job = Job.create(
        "package app;\nimport app.model.P;\npublic class Main { public static void main(String[] a) { } }",
        "java",
        files={"P.java": "package app.model;\npublic class P { }\n", "notes.txt": "x"},
    )
    shaped = shape(job)
    assert [f["encoding"] for f in shaped.files] == ["utf8", "base64"]  # one unit; data stays data
    unit = shaped.files[0]["content"]
    assert "package" not in unit and "import app.model.P" not in unit
    assert [t.name for t in scan(unit).types] == ["Main", "P"]
    p_line = next(i for i, line in enumerate(unit.splitlines(), 1) if "class P" in line)
    assert shaped.restore(f"at P.x(Main.java.java:{p_line})") == "at P.x(P.java:2)"


def test_one_java_entry_rule_for_both_engines() -> None:
    assert entry_point([scan("class A {}\nclass B { static public void main(String[] x) {} }")])[1].name == "B"  # type: ignore[index]
    assert (
        java_main_class(Job.create("package p.q;\nclass A { public static void main(String[] a) {} }", "java"))
        == "p.q.A"
    )
    # comments and strings do not fool the scanner
    assert [t.name for t in scan('/* class X {} */ class Y { String s = "class Z {"; }').types] == ["Y"]


def test_one_stdin_rule() -> None:
    assert [program_stdin(s) for s in ("", "a", "a\n")] == ["\n", "a\n", "a\n"]
