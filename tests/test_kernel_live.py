"""Live ``%%capsule`` cells in a REAL IPython kernel driven through jupyter_client, as a front end drives it.

The test is the front end: it reads the kernel's iopub messages, answers its ``input_request`` messages on the
stdin channel (what the notebook's input box does), and presses Stop (``interrupt_kernel``). What the notebook file
would keep is rebuilt from the messages (``clear_output(wait=True)`` included), so the tests assert what a saved
notebook stores. Synchronisation is on messages only: a program waits for input or prints before the test acts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.kernels import write_python_kernelspec

jupyter_client = pytest.importorskip("jupyter_client")
zmq = pytest.importorskip("zmq")

from codecapsule._display_budget import DEFAULT_BUDGET  # noqa: E402
from codecapsule._hints import READS_INPUT  # noqa: E402
from codecapsule._live_display import END_OF_INPUT  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent


# -- the front end ------------------------------------------------------------------------------------------


@dataclass
class CellRun:
    messages: list[dict[str, Any]] = field(default_factory=list)  # iopub messages of the cell, in order
    stored: list[dict[str, Any]] = field(default_factory=list)  # the outputs a saved notebook keeps
    prompts: list[str] = field(default_factory=list)  # input_request prompts, in order
    reply: dict[str, Any] = field(default_factory=dict)

    @property
    def stored_text(self) -> str:
        return "\n".join(
            o.get("text", "") if o["output_type"] == "stream" else o.get("data", {}).get("text/plain", "")
            for o in self.stored
        )

    @property
    def stored_bytes(self) -> int:
        return len(json.dumps(self.stored).encode())

    @property
    def everything(self) -> str:
        return json.dumps([m["content"] for m in self.messages])


def _store(run: CellRun, clear_pending: list[bool], msg: dict[str, Any]) -> None:
    """What a notebook front end does with an output message (nbformat outputs)."""
    kind, content = msg["msg_type"], msg["content"]
    if kind == "clear_output":
        if content.get("wait"):
            clear_pending[0] = True
        else:
            run.stored.clear()
        return
    if kind not in ("stream", "display_data", "execute_result", "error", "update_display_data"):
        return
    if clear_pending[0]:
        run.stored.clear()
        clear_pending[0] = False
    if kind == "stream":
        if run.stored and run.stored[-1]["output_type"] == "stream" and run.stored[-1]["name"] == content["name"]:
            run.stored[-1]["text"] += content["text"]
        else:
            run.stored.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
    elif kind != "update_display_data":
        run.stored.append({"output_type": kind, **{k: v for k, v in content.items() if k != "transient"}})


Answer = Callable[[str, CellRun], str | None]  # prompt → the line to type (None: press Stop instead)


def run_cell(
    km: Any,
    kc: Any,
    code: str,
    *,
    answers: list[str] | None = None,
    allow_stdin: bool = True,
    on_output: Callable[[CellRun], None] | None = None,
    timeout: float = 180,
) -> CellRun:
    """Execute ``code`` and follow it to idle: type ``answers`` one per input_request (Stop when none are
    left), call ``on_output`` after each stream message."""
    pending = list(answers or [])
    run, clear_pending = CellRun(), [False]
    msg_id = kc.execute(code, allow_stdin=allow_stdin)
    poller = zmq.Poller()
    poller.register(kc.iopub_channel.socket, zmq.POLLIN)
    poller.register(kc.stdin_channel.socket, zmq.POLLIN)
    idle = False
    while not idle:
        ready = dict(poller.poll(timeout * 1000))
        assert ready, f"no message from the kernel within {timeout}s; so far: {run.everything[-2000:]}"
        # what arrived on iopub is shown before an input box that arrived with it (a front end shows messages
        # in arrival order; the kernel flushes the output before it asks)
        while not idle and kc.iopub_channel.msg_ready():
            msg = kc.get_iopub_msg(timeout=5)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            run.messages.append(msg)
            _store(run, clear_pending, msg)
            if msg["msg_type"] == "stream" and on_output is not None:
                on_output(run)
            idle = msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
        if kc.stdin_channel.socket in ready:
            request = kc.get_stdin_msg(timeout=5)
            run.prompts.append(request["content"]["prompt"])
            if pending:
                kc.input(pending.pop(0))
            else:
                km.interrupt_kernel()  # Stop while the program waits for input
    run.reply = kc.get_shell_msg(timeout=30)["content"]
    return run


@contextlib.contextmanager
def live_kernel(root: Path, workdir: Path) -> Iterator[tuple[Any, Any]]:
    """A real ipykernel running this interpreter with this checkout's codecapsule, the extension loaded
    (``root``: a directory for its kernelspec; ``workdir``: its working directory)."""
    write_python_kernelspec(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECAPSULE_") or k == "CODECAPSULE_CACHE_DIR"}
    env.update(JUPYTER_PATH=str(root), PYTHONPATH=str(ROOT))
    km = jupyter_client.KernelManager(kernel_name="python3", kernel_spec_manager=_specs(root))
    km.start_kernel(env=env, cwd=str(workdir))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        loaded = run_cell(km, kc, "%load_ext codecapsule")
        assert loaded.reply["status"] == "ok", loaded.everything
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    with live_kernel(tmp_path_factory.mktemp("jupyter"), tmp_path_factory.mktemp("kernel-cwd")) as both:
        yield both


def _specs(root: Path) -> Any:
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager(kernel_dirs=[str(root / "kernels")])


def _no_traceback(run: CellRun, *, stopped: bool = False) -> None:
    """No error message and nothing of codecapsule's stack; a stopped run shows no traceback at all (a
    program that failed on its own shows its own)."""
    assert not [m for m in run.messages if m["msg_type"] == "error"], run.everything
    assert "KeyboardInterrupt" not in run.everything
    if stopped:
        assert "Traceback" not in run.everything
    assert "codecapsule/" not in run.everything.replace("codecapsule/labextension", "")
    assert run.reply["status"] == "ok", run.reply


def _processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if marker.encode() in cmdline:
            found.append(entry.name)
    return found


# -- input in the input box, one line at a time -------------------------------------------------------------

_ADD_TWO_LINES = {
    "python": ("python", "a = int(input())\nb = int(input())\nprint(a + b)\n"),
    "javascript": (
        "node",
        "const rl = require('readline').createInterface({ input: process.stdin });\n"
        "const seen = [];\n"
        # rl.close() alone leaves Node 20 reading a pipe stdin (measured: it never exits while the pipe is open,
        # and the engine rightly asks for more): a program done with its input destroys the stream
        "rl.on('line', (line) => { seen.push(Number(line));"
        " if (seen.length === 2) { console.log(seen[0] + seen[1]); rl.close(); process.stdin.destroy(); } });\n",
    ),
    "java": (
        "javac",
        "import java.util.Scanner;\npublic class Main {\n  public static void main(String[] args) {\n"
        "    Scanner in = new Scanner(System.in);\n    int a = in.nextInt();\n    int b = in.nextInt();\n"
        "    System.out.println(a + b);\n  }\n}\n",
    ),
    "c": (
        "gcc",
        '#include <stdio.h>\nint main(void) {\n  int a, b;\n  if (scanf("%d", &a) != 1) return 1;\n'
        '  if (scanf("%d", &b) != 1) return 1;\n  printf("%d\\n", a + b);\n  return 0;\n}\n',
    ),
    "cpp": (
        "g++",
        "#include <iostream>\nint main() {\n  int a, b;\n  std::cin >> a;\n  std::cin >> b;\n"
        '  std::cout << a + b << "\\n";\n  return 0;\n}\n',
    ),
}


@pytest.mark.parametrize("language", sorted(_ADD_TWO_LINES))
def test_the_input_box_answers_a_program_line_by_line(kernel: tuple[Any, Any], language: str) -> None:
    tool, source = _ADD_TWO_LINES[language]
    if shutil.which(tool) is None:
        pytest.skip(f"needs {tool}")
    km, kc = kernel
    run = run_cell(km, kc, f"%%capsule {language} --engine local\n{source}", answers=["3", "4"])
    assert len(run.prompts) == 2 and all(END_OF_INPUT in p for p in run.prompts), run.prompts
    assert "ok" in run.stored_text.splitlines()[0] and "\n7" in run.stored_text, run.stored_text
    assert [o["output_type"] for o in run.stored] == ["display_data"], run.stored  # live echo replaced
    _no_traceback(run)


def test_end_of_input_is_typed_as_the_prompt_says(kernel: tuple[Any, Any]) -> None:
    km, kc = kernel
    source = "import sys\nprint('total', sum(int(line) for line in sys.stdin))\n"
    run = run_cell(km, kc, f"%%capsule python --engine local\n{source}", answers=["1", "2", END_OF_INPUT])
    assert len(run.prompts) == 3
    assert "total 3" in run.stored_text, run.stored_text
    _no_traceback(run)


# -- output while the program runs -------------------------------------------------------------------------


def test_output_arrives_while_the_program_still_runs(kernel: tuple[Any, Any]) -> None:
    """The program prints, then waits for input: its line must reach the front end before the input box
    (the program cannot have exited: it is waiting for the answer the test has not typed yet)."""
    km, kc = kernel
    source = "print('first line', flush=True)\nname = input()\nprint('hello', name)\n"
    order: list[str] = []

    def seen(run: CellRun) -> None:
        if "first line" in "".join(m["content"].get("text", "") for m in run.messages):
            order.append(f"output before {len(run.prompts)} prompts")

    run = run_cell(km, kc, f"%%capsule python --engine local\n{source}", answers=["Ada"], on_output=seen)
    assert order and order[0] == "output before 0 prompts", order
    assert "hello Ada" in run.stored_text
    assert [o["output_type"] for o in run.stored] == ["display_data"], run.stored


# -- Stop ---------------------------------------------------------------------------------------------------


def test_stop_while_it_prints_keeps_the_output_and_leaves_no_process(kernel: tuple[Any, Any]) -> None:
    km, kc = kernel
    marker = f"cc-stop-{uuid.uuid4().hex}"
    source = "print('before stop', flush=True)\nwhile True:\n    pass\n"
    pressed: list[bool] = []

    def stop(run: CellRun) -> None:
        if not pressed:
            pressed.append(True)
            km.interrupt_kernel()

    run = run_cell(km, kc, f"%%capsule python --engine local --args {marker}\n{source}", on_output=stop)
    assert pressed
    first = run.stored_text.splitlines()[0]
    assert "interrupted" in first, run.stored_text
    assert "before stop" in run.stored_text
    _no_traceback(run, stopped=True)
    assert _processes_with(marker) == []


def test_stop_while_it_waits_for_input(kernel: tuple[Any, Any]) -> None:
    km, kc = kernel
    marker = f"cc-stop-{uuid.uuid4().hex}"
    run = run_cell(km, kc, f"%%capsule python --engine local --args {marker}\nprint('ask')\nx = input()\n", answers=[])
    assert len(run.prompts) == 1
    assert "interrupted" in run.stored_text.splitlines()[0], run.stored_text
    assert "ask" in run.stored_text
    _no_traceback(run, stopped=True)
    assert _processes_with(marker) == []


# -- where nobody can type ----------------------------------------------------------------------------------

_READS = "n = int(input())\nprint(n * 2)\n"


def test_a_front_end_that_cannot_ask_gets_the_reads_input_hint(kernel: tuple[Any, Any]) -> None:
    """nbclient's Run All executes with allow_stdin=False: the program sees end-of-input, the cell says why."""
    km, kc = kernel
    run = run_cell(km, kc, f"%%capsule python --engine local\n{_READS}", allow_stdin=False)
    assert run.prompts == []
    assert READS_INPUT in run.stored_text, run.stored_text
    _no_traceback(run)


@pytest.mark.parametrize("how", ["--no-input", "config"])
def test_no_input_and_the_interactive_config_never_ask(kernel: tuple[Any, Any], how: str) -> None:
    km, kc = kernel
    if how == "config":
        assert run_cell(km, kc, "%config Capsule.interactive = False").reply["status"] == "ok"
        line = "%%capsule python --engine local"
    else:
        line = "%%capsule python --engine local --no-input"
    try:
        run = run_cell(km, kc, f"{line}\n{_READS}")
    finally:
        run_cell(km, kc, "%config Capsule.interactive = True")
    assert run.prompts == []  # an input box would hang a grading notebook
    assert READS_INPUT in run.stored_text, run.stored_text
    _no_traceback(run)


def test_given_stdin_is_used_and_nothing_is_asked(kernel: tuple[Any, Any]) -> None:
    km, kc = kernel
    run = run_cell(km, kc, f'%%capsule python --engine local --stdin "21"\n{_READS}')
    assert run.prompts == []
    assert "\n42" in run.stored_text and READS_INPUT not in run.stored_text, run.stored_text


# -- what the notebook file keeps ---------------------------------------------------------------------------


RUNAWAY_PRINT = "for i in range(9000):\n    print(f'line {i:05d} ' + 'x' * 90)\n"  # ~900 KB, under the output limit


def test_a_runaway_print_stores_a_bounded_cell_and_the_whole_result_stays_reachable(
    kernel: tuple[Any, Any],
) -> None:
    km, kc = kernel
    run = run_cell(km, kc, f"%%capsule python --engine local\n{RUNAWAY_PRINT}", allow_stdin=False)
    displays = [o for o in run.stored if o["output_type"] == "display_data"]
    assert len(displays) == 1, [o["output_type"] for o in run.stored]
    # the html keeps head and tail of stdout within the budget, the text its first lines (932 KB unbounded)
    assert run.stored_bytes < 2 * DEFAULT_BUDGET, run.stored_bytes
    html = displays[0]["data"]["text/html"]  # the folded part ("show all") is in the file too
    assert "line 00000" in html and "line 08999" in html and "bytes left out of this view" in html
    assert "_capsule_result.stdout" in html
    whole = run_cell(km, kc, "print(len(_capsule_result.stdout.splitlines()), _capsule_result.verdict)")
    assert "9000 ok" in "".join(m["content"].get("text", "") for m in whole.messages), whole.everything
