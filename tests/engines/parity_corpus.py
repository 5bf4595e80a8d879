"""Classroom programs that must give the same Result on the local engine and on Piston (through the client).

Each entry: a name, the language, the source, extra files, stdin (None = not given), a memory limit, and the
verdict both engines must reach. The programs are the ones that broke in issue 10, and their everyday cousins.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Program:
    name: str
    language: str
    source: str
    verdict: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    stdin: str | None = None
    memory: str | None = None
    stdout: str | None = None  # when given, both engines must print exactly this


_JAVA_MAIN = "public class Main { public static void main(String[] a) { %s } }"
ALLOC_512MB = {
    "python": "x = bytearray(b'x' * (512 << 20))\nprint(len(x))",
    "javascript": "const a = []; for (let i = 0; i < 64; i++) a.push(Buffer.alloc(8 << 20, 1)); "
    "const b = []; while (true) b.push(new Array(1 << 20).fill(1.5)); ",
    "java": "import java.util.*; public class Main { public static void main(String[] a) { "
    "List<long[]> l = new ArrayList<>(); for (int i = 0; i < 64; i++) l.add(new long[1 << 20]); "
    "System.out.println(l.size()); } }",
    "c": "#include <stdlib.h>\n#include <string.h>\n#include <stdio.h>\nint main(void){ size_t n = (size_t)512 << 20;"
    ' char *p = malloc(n); if (!p) return 3; memset(p, 1, n); printf("%d\\n", p[n-1]); return 0; }',
    "c++": "#include <vector>\n#include <iostream>\nint main(){ std::vector<char> v((size_t)512 << 20, 1);"
    " std::cout << (int)v.back() << std::endl; }",
}

PROGRAMS: tuple[Program, ...] = (
    # -- Java: class order, several files, packages ------------------------------------------------------
    Program(
        "java-helper-before-public",
        "java",
        "class Pair { int a = 4, b = 2; }\npublic class Solution {\n  public static void main(String[] x) {\n"
        "    Pair p = new Pair(); System.out.println(p.a * 10 + p.b);\n  }\n}\n",
        "ok",
        stdout="42\n",
    ),
    Program(
        "java-no-public-main-second",
        "java",
        "class Util { static int twice(int n) { return 2 * n; } }\nclass App {\n"
        "  public static void main(String[] x) { System.out.println(Util.twice(21)); }\n}\n",
        "ok",
        stdout="42\n",
    ),
    Program(
        "java-two-files",
        "java",
        'public class Main {\n  public static void main(String[] a) {\n    System.out.println(Helper.greet("Ada"));\n'
        "  }\n}\n",
        "ok",
        files={"Helper.java": 'public class Helper {\n  static String greet(String n) { return "Hello, " + n; }\n}\n'},
        stdout="Hello, Ada\n",
    ),
    Program(
        "java-files-with-imports",
        "java",
        "import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
        "    List<Integer> l = new ArrayList<>(List.of(3, 1, 2)); Sorter.sort(l); System.out.println(l);\n  }\n}\n",
        "ok",
        files={
            "Sorter.java": "import java.util.Collections;\nimport java.util.List;\n"
            "class Sorter { static void sort(List<Integer> l) { Collections.sort(l); } }\n"
        },
        stdout="[1, 2, 3]\n",
    ),
    Program(
        "java-package-lines",
        "java",
        "package app;\n\nimport app.model.Point;\n\npublic class Main {\n  public static void main(String[] a) {\n"
        "    System.out.println(new Point(1, 2));\n  }\n}\n",
        "ok",
        files={
            "Point.java": "package app.model;\n\npublic class Point {\n  final int x, y;\n"
            "  public Point(int x, int y) { this.x = x; this.y = y; }\n"
            '  public String toString() { return "(" + x + ", " + y + ")"; }\n}\n'
        },
        stdout="(1, 2)\n",
    ),
    Program(
        "java-single-package",
        "java",
        'package hello;\npublic class Main { public static void main(String[] a) { System.out.println("hi"); } }\n',
        "ok",
        stdout="hi\n",
    ),
    Program(
        "java-compile-error-second-file",
        "java",
        "public class Main { public static void main(String[] a) { System.out.println(Helper.x()); } }\n",
        "compile_error",
        files={"Helper.java": "class Helper {\n  static int x() {\n    return 1\n  }\n}\n"},
    ),
    Program(
        "java-stdin-scanner",
        "java",
        "import java.util.Scanner;\npublic class Main { public static void main(String[] a) { "
        "Scanner s = new Scanner(System.in); int x = s.nextInt(), y = s.nextInt(); System.out.println(x + y); } }",
        "ok",
        stdin="40 2",
        stdout="42\n",
    ),
    Program("java-exception", "java", _JAVA_MAIN % 'throw new IllegalStateException("boom");', "runtime_error"),
    Program(
        "java-record-and-enum-first",
        "java",
        "enum Color { RED, GREEN }\nrecord P(int x) {}\npublic class Main { public static void main(String[] a) {"
        ' System.out.println(Color.GREEN + " " + new P(3).x()); } }\n',
        "ok",
        stdout="GREEN 3\n",
    ),
    # -- C / C++: headers, several sources, data files -----------------------------------------------------
    Program(
        "c-header",
        "c",
        '#include <stdio.h>\n#include "util.h"\nint main(void){ printf("%d\\n", twice(21)); }\n',
        "ok",
        files={"util.h": "static inline int twice(int n) { return 2 * n; }\n"},
        stdout="42\n",
    ),
    Program(
        "c-two-sources",
        "c",
        '#include <stdio.h>\n#include "util.h"\nint main(void){ printf("%d\\n", add(40, 2)); }\n',
        "ok",
        files={
            "util.h": "int add(int a, int b);\n",
            "util.c": '#include "util.h"\nint add(int a, int b) { return a + b; }\n',
        },
        stdout="42\n",
    ),
    Program(
        "c-data-file",
        "c",
        '#include <stdio.h>\nint main(void){ FILE *f = fopen("data.txt", "r"); int a, b; '
        'if (!f || fscanf(f, "%d %d", &a, &b) != 2) return 1; printf("%d\\n", a + b); return 0; }\n',
        "ok",
        files={"data.txt": "40 2\n"},
        stdout="42\n",
    ),
    Program(
        "c-math",
        "c",
        '#include <stdio.h>\n#include <math.h>\nint main(void){ printf("%.3f\\n", sqrt(2.0)); }\n',
        "ok",
        stdout="1.414\n",
    ),
    Program(
        "c-compile-error", "c", '#include <stdio.h>\nint main(void){ printf("%d\\n", missing); }\n', "compile_error"
    ),
    Program("c-segfault", "c", "int main(void){ volatile int *p = 0; return *p; }\n", "signal"),
    Program(
        "c-scanf-stdin",
        "c",
        '#include <stdio.h>\nint main(void){ int a, b; if (scanf("%d %d", &a, &b) != 2)'
        ' return 1; printf("sum=%d\\n", a + b); }\n',
        "ok",
        stdin="40 2",
        stdout="sum=42\n",
    ),
    Program(
        "cpp-header-and-source",
        "c++",
        '#include <iostream>\n#include "shape.hpp"\nint main(){ std::cout << area(Rect{6, 7}) << "\\n"; }\n',
        "ok",
        files={
            "shape.hpp": "struct Rect { int w, h; };\nint area(const Rect &r);\n",
            "shape.cpp": '#include "shape.hpp"\nint area(const Rect &r) { return r.w * r.h; }\n',
        },
        stdout="42\n",
    ),
    Program(
        "cpp-data-file",
        "c++",
        '#include <fstream>\n#include <iostream>\nint main(){ std::ifstream f("in.txt"); int a, b; f >> a >> b;'
        " std::cout << a * b << std::endl; }\n",
        "ok",
        files={"in.txt": "6 7\n"},
        stdout="42\n",
    ),
    Program("cpp-compile-error", "c++", "int main(){ return undefined; }\n", "compile_error"),
    # -- <bits/stdc++.h>: the local engine's warm path precompiles it; diagnostics stay a cold compile's ------
    Program(
        "cpp-bits-warning",
        "c++",
        "#include <bits/stdc++.h>\nusing namespace std;\nint main(){\n    int unused;\n"
        "    vector<int> v{3, 1, 2};\n    sort(v.begin(), v.end());\n    cout << v[0] << endl;\n}\n",
        "ok",
        stdout="1\n",
    ),
    Program(
        "cpp-bits-compile-error",
        "c++",
        "#include <bits/stdc++.h>\nstruct S {};\nint main(){\n    std::vector<S> v;\n"
        "    std::sort(v.begin(), v.end());\n    return missing;\n}\n",
        "compile_error",
    ),
    # -- the compile profile's warnings (-Wall) on both engines, naming the student's file and line ------------
    Program(
        "c-warnings",
        "c",
        '#include <stdio.h>\nint main(void){\n    int x = 0, unused;\n    if (x = 5) printf("%d\\n", x);\n}\n',
        "ok",
        stdout="5\n",
    ),
    Program(
        "cpp-warnings-two-files",
        "c++",
        '#include <iostream>\n#include "util.hpp"\n'
        'int main(){ int n = 3; if (n = twice(n)) std::cout << n << "\\n"; }\n',
        "ok",
        files={
            "util.hpp": "int twice(int n);\n",
            "util.cpp": '#include "util.hpp"\nint twice(int n) { int unused; return 2 * n; }\n',
        },
        stdout="6\n",
    ),
    # -- memory limits, every language ---------------------------------------------------------------------
    *(
        Program(f"{lang}-512mb-under-128mb", lang, src, "memory_limit", memory="128MB")
        for lang, src in ALLOC_512MB.items()
    ),
    # -- stdin present, empty, absent --------------------------------------------------------------------
    Program("python-input-present", "python", "print(input() * 2)", "ok", stdin="ab", stdout="abab\n"),
    Program("python-input-empty", "python", "print(repr(input()))", "ok", stdin="", stdout="''\n"),
    Program("python-input-absent", "python", "print(repr(input()))", "ok", stdout="''\n"),
    Program(
        "python-read-all",
        "python",
        "import sys; print(repr(sys.stdin.read()))",
        "ok",
        stdin="1\n2",
        stdout="'1\\n2\\n'\n",
    ),
    Program(
        "js-stdin-absent",
        "javascript",
        "console.log(JSON.stringify(require('fs').readFileSync(0, 'utf8')))",
        "ok",
        stdout='"\\n"\n',
    ),
    # -- multi-file Python and JavaScript --------------------------------------------------------------
    Program(
        "python-import-helper",
        "python",
        "import helper\nprint(helper.double(21))",
        "ok",
        files={"helper.py": "def double(n):\n    return 2 * n\n"},
        stdout="42\n",
    ),
    Program(
        "python-package-dir",
        "python",
        "from pkg.mod import VALUE\nprint(VALUE)",
        "ok",
        files={"pkg/__init__.py": "", "pkg/mod.py": "VALUE = 42\n"},
        stdout="42\n",
    ),
    Program("python-exit-quit", "python", "print('bye')\nexit(3)", "runtime_error", stdout="bye\n"),
    Program(
        "python-reads-data-file",
        "python",
        "print(open('data.csv').read().splitlines()[1])",
        "ok",
        files={"data.csv": "a,b\n1,2\n"},
        stdout="1,2\n",
    ),
    Program(
        "js-require-sibling",
        "javascript",
        "const lib = require('./lib.js'); console.log(lib.twice(21));",
        "ok",
        files={"lib.js": "exports.twice = (n) => 2 * n;\n"},
        stdout="42\n",
    ),
    Program("python-exception", "python", "raise ValueError('boom')", "runtime_error"),
    # -- Python that cannot be read is a compile error, like the compiled languages' ---------------------
    Program(
        "python-syntax-error",
        "python",
        "def area(r):\n    return 3.14 * r * r\n\nprint('start')\nprint(area(2)\n",
        "compile_error",
        stdout="",
    ),
    Program(
        "python-indentation-error",
        "python",
        "total = 0\nfor n in range(3):\ntotal += n\nprint(total)\n",
        "compile_error",
        stdout="",
    ),
    Program(
        "python-prints-the-compile-marker",
        "python",
        "import sys\nsys.stderr.write('\\x00capsule:syntax\\n')\nprint(42)\n",
        "ok",
        stdout="42\n",
    ),
)
