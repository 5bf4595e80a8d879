"""The live view's rules (codecapsule/_live_display.py, _display_budget.py) against a scripted run stream.

The whole path through a real kernel and the real engines is tests/test_kernel_live.py; here each rule alone:
what is echoed, what is sent to the program for each answer, what Stop does, what a cell keeps."""

from __future__ import annotations

import io

import pytest
from IPython.core.error import StdinNotImplementedError

from codecapsule._display_budget import bounded, head_and_tail
from codecapsule._events import Finished, InputWanted, Output, StageStarted
from codecapsule._live_display import END_OF_INPUT, INPUT_PROMPT, Echo, follow
from tests.fakes.run_stream import ScriptedRun, result

pytestmark = pytest.mark.timeout(30)  # a consumer that loops on a stream must fail, not hang


def _echo(budget: int = 1000) -> tuple[Echo, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Echo(budget, {"stdout": out, "stderr": err}), out, err


def test_output_is_echoed_per_stream_and_the_result_is_the_streams_last_event() -> None:
    done = result("ok", "a\nb\n")
    run = ScriptedRun(
        [
            StageStarted("run"),
            Output("run", "stdout", "a\n"),
            Output("run", "stderr", "w\n"),
            Output("run", "stdout", "b\n"),
            Finished(done),
        ]
    )
    echo, out, err = _echo()
    outcome = follow(run, language="python", ask=None, echo=echo)
    assert outcome.result is done and outcome.echoed and not outcome.unasked
    assert out.getvalue() == "a\nb\n" and err.getvalue() == "w\n"
    assert run.exited  # the with block closed the stream


def test_the_live_echo_stops_at_its_budget_with_one_line_saying_so() -> None:
    run = ScriptedRun(
        [
            Output("run", "stdout", "x" * 60),
            Output("run", "stdout", "y" * 60),
            Output("run", "stdout", "z" * 60),
            Finished(result()),
        ]
    )
    echo, out, _ = _echo(budget=100)
    follow(run, language="python", ask=None, echo=echo)
    assert out.getvalue() == "x" * 60 + "\n… (more stdout: shown when the program ends)\n"


def test_each_answer_is_sent_as_a_line_and_the_end_of_input_line_closes_stdin() -> None:
    run = ScriptedRun([InputWanted("run"), InputWanted("run"), InputWanted("run"), Finished(result())])
    answers = iter(["3", "", END_OF_INPUT])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    follow(run, language="python", ask=ask, echo=_echo()[0])
    assert run.sent == ["3\n", "\n"] and run.closed  # an empty line is a line, not the end of input
    assert prompts == [INPUT_PROMPT] * 3 and END_OF_INPUT in INPUT_PROMPT


@pytest.mark.parametrize("cannot", [StdinNotImplementedError, OSError])
def test_a_front_end_that_cannot_ask_gives_end_of_input_once(cannot: type[Exception]) -> None:
    run = ScriptedRun([InputWanted("run"), InputWanted("run"), Finished(result("runtime_error"))])
    calls: list[str] = []

    def ask(prompt: str) -> str:
        calls.append(prompt)
        raise cannot("no stdin")

    outcome = follow(run, language="python", ask=ask, echo=_echo()[0])
    assert outcome.unasked and run.closed and run.sent == [] and len(calls) == 1


def test_no_asker_means_end_of_input_and_the_outcome_says_the_program_wanted_some() -> None:
    run = ScriptedRun([InputWanted("run"), Finished(result())])
    outcome = follow(run, language="python", ask=None, echo=_echo()[0])
    assert outcome.unasked and run.closed


def test_stop_while_waiting_for_input_cancels_and_keeps_the_output() -> None:
    run = ScriptedRun([Output("run", "stdout", "name? "), InputWanted("run"), Finished(result())])

    def ask(prompt: str) -> str:
        raise KeyboardInterrupt  # ipykernel raises it from input() when Stop is pressed

    outcome = follow(run, language="python", ask=ask, echo=_echo()[0])
    assert run.cancelled == 1 and outcome.result.verdict == "interrupted" and outcome.result.stdout == "name? "


def test_stop_while_waiting_for_output_cancels_and_reads_the_stream_to_its_end() -> None:
    run = ScriptedRun([Output("run", "stdout", "1\n"), KeyboardInterrupt, Output("run", "stdout", "never\n")])
    outcome = follow(run, language="python", ask=None, echo=_echo()[0])
    assert run.cancelled == 1 and outcome.result.verdict == "interrupted" and outcome.result.stdout == "1\n"


def test_a_stream_cut_short_by_stop_still_gives_an_interrupted_result_with_its_output() -> None:
    def events():  # a generator the interrupt went through: it cannot go on
        yield Output("run", "stdout", "kept\n")
        raise KeyboardInterrupt

    the_events = events()

    class GeneratorRun(ScriptedRun):
        def __iter__(self):  # type: ignore[override]
            return the_events  # one generator: iterating again gives the same, finished one

    run = GeneratorRun([])
    outcome = follow(run, language="python", ask=None, echo=_echo()[0])
    assert outcome.result.verdict == "interrupted" and outcome.result.stdout == "kept\n" and run.cancelled


def test_a_stream_without_finished_is_an_engine_bug() -> None:
    with pytest.raises(RuntimeError, match="without its Finished event"):
        follow(ScriptedRun([Output("run", "stdout", "x")]), language="python", ask=None, echo=_echo()[0])


# -- what a cell keeps ---------------------------------------------------------------------------------------


def test_head_and_tail_keep_whole_lines_and_say_how_much_is_left_out() -> None:
    text = "".join(f"{i:04d}\n" for i in range(1000))  # 5000 bytes
    kept = head_and_tail(text, 100)
    assert kept.startswith("0000\n") and kept.endswith("0999\n")
    assert len(kept.encode()) < 100 + 120
    marker = [line for line in kept.splitlines() if line.startswith("…")]
    assert marker and f"{5000 - len(kept.encode()) + len(marker[0].encode()) + 1:,} bytes left out" in marker[0]
    assert head_and_tail("short\n", 100) == "short\n"


def test_bounded_leaves_the_result_itself_whole() -> None:
    full = result("ok", "é" * 10_000)
    shown = bounded(full, 1000)
    assert len(full.stdout) == 10_000 and len(shown.stdout.encode()) < 1200
    assert bounded(result("ok", "small"), 1000) == result("ok", "small")


def test_stop_inside_a_generator_iterator_reads_the_rest_from_a_new_iterator() -> None:
    """A stream whose ``__iter__`` is a generator over a queue (as engines write it): the interrupt ends that
    generator, a new one reads the Finished event the cancelled run still sends."""
    queue: list[object] = [Output("run", "stdout", "so far\n"), KeyboardInterrupt]

    class QueueRun(ScriptedRun):
        def __iter__(self):  # type: ignore[override]
            while True:
                if self.cancelled:
                    yield Finished(result("interrupted", "so far\n"))
                    return
                item = queue.pop(0)
                if item is KeyboardInterrupt:
                    raise KeyboardInterrupt
                yield item

    run = QueueRun([])
    outcome = follow(run, language="python", ask=None, echo=_echo()[0])
    assert outcome.result.engine == "scripted"  # the stream's own Result, not one made up from the echo
    assert outcome.result.verdict == "interrupted" and outcome.result.stdout == "so far\n"
