"""Output comparison: the bounded diff equals the plain unified diff of normalised lines on small inputs, and
stays small on large ones (its speed is measured in bench/bench_local.py, not here)."""

from __future__ import annotations

import difflib
import random

from codecapsule._verdicts import compare_output, normalise_output


def _reference(actual: str, expected: str) -> str | None:
    want, got = normalise_output(expected), normalise_output(actual)
    if want == got:
        return None
    return "\n".join(difflib.unified_diff(want, got, "expected", "actual", lineterm="", n=2))


def test_same_answer_as_the_unbounded_diff_on_small_inputs() -> None:
    rng = random.Random(9)
    alphabet = "ab \n\r\t\x0c\x1c\u2028\xa0"
    for _ in range(5000):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        e = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert compare_output(a, e) == _reference(a, e), (a, e)


def test_a_large_wrong_answer_is_cut_with_true_line_numbers() -> None:
    expected = "".join(f"{i}\n" for i in range(150_000))
    diff = compare_output(expected.replace("\n77777\n", "\n77778\n"), expected)
    assert diff is not None
    assert "@@ -77776,5 +77776,5 @@" in diff and "first difference at line 77778" in diff
    assert diff.count("\n") < 80
