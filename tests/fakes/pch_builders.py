"""PCH builders for tests of the store's bookkeeping (the real one is ``_warm_compile.sandboxed_builder``)."""

from __future__ import annotations

import threading

from codecapsule.engines._toolchains import Toolchain


class FailingBuilder:
    """A build that never produces a header (fails or raises), counting how often it was asked."""

    def __init__(self, *, raises: bool = False) -> None:
        self.calls = 0
        self.raises = raises
        self.done = threading.Event()

    def __call__(self, tc: Toolchain, language: str, header: str, output: str) -> bytes | None:
        self.calls += 1
        self.done.set()
        if self.raises:
            raise OSError("no space left on the device")
        return None
