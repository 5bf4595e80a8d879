"""Cloud SDK logging kept off the user's terminal while a CodeCapsule command runs.

Without an Azure sign-in, ``DefaultAzureCredential`` logs a warning per credential it tried (about fifteen lines)
before raising; the command then reports the failure itself, in one line that says what to do. So the SDKs' own
loggers are raised above WARNING for the duration of a command, and put back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SDK_LOGGERS", "quiet_sdk_logs"]

SDK_LOGGERS = ("azure", "msal", "cloudflare", "urllib3")


@contextmanager
def quiet_sdk_logs() -> Iterator[None]:
    """Only CRITICAL records of the cloud SDKs' loggers get through inside the block."""
    loggers = [logging.getLogger(name) for name in SDK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
