"""Progress for batches: a text bar on a terminal, an ipywidgets bar in a notebook, nothing otherwise."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from ._results import Result


class Progress(Protocol):
    def advance(self, result: Result | None) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def advance(self, result: Result | None) -> None:
        pass

    def close(self) -> None:
        pass


class _Tally:
    """Counts finished jobs and verdicts; thread-safe."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.verdicts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, result: Result | None) -> tuple[int, str]:
        with self._lock:
            self.done += 1
            if result is not None:
                self.verdicts[result.verdict.value] += 1
            summary = ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts.items()))
            return self.done, summary


class TextProgress(_Tally):
    """``[#####.....] 12/40  ok 10, runtime_error 2`` redrawn in place on a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        super().__init__(total)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width

    def advance(self, result: Result | None) -> None:
        done, summary = self.add(result)
        filled = int(self.width * done / self.total) if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total}  {summary}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class WidgetProgress(_Tally):
    """An ipywidgets progress bar with a label, for notebooks."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=max(total, 1), description="running")
        self.label = widgets.Label(value=f"0/{total}")
        self.box = widgets.HBox([self.bar, self.label])
        display(self.box)  # type: ignore[no-untyped-call]

    def advance(self, result: Result | None) -> None:
        done, summary = self.add(result)
        self.bar.value = done
        self.label.value = f"{done}/{self.total}  {summary}"

    def close(self) -> None:
        self.bar.description = "done"
        self.bar.bar_style = "success" if set(self.verdicts) <= {"ok"} else "warning"


def _in_notebook() -> bool:
    shell: Any = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def make_progress(progress: bool | Progress, total: int) -> Progress:
    if progress is False or progress is None:
        return NoProgress()
    if progress is not True:
        return progress
    if _in_notebook():
        try:
            return WidgetProgress(total)
        except ImportError:
            pass
    return TextProgress(total)
