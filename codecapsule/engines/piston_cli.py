"""CLI pieces for the Piston engine (wired into ``codecapsule/cli.py`` by the lead)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from .._errors import CodeCapsuleError

if TYPE_CHECKING:
    from .._client import Client


def print_runtimes(client: Client, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``codecapsule runtimes``: the server's installed languages, versions and aliases.

    Returns the exit status: 0 on success; 1 when the server cannot be asked (the error's message, which names
    the fix, goes to stderr); 2 when no Piston URL is configured.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if not client.settings.piston_url:
        print("codecapsule: no Piston server configured: set CODECAPSULE_PISTON_URL or pass --piston URL.", file=err)
        return 2
    try:
        runtimes = client.runtimes()
    except CodeCapsuleError as exc:
        print(f"codecapsule: {exc}", file=err)
        return 1
    if not runtimes:
        print(
            "no runtimes installed: install one with `codecapsule cluster install python` or "
            "client.install('python', '3.12.0').",
            file=out,
        )
        return 0
    rows = [(rt.language, rt.version, ", ".join(rt.aliases) or "-", rt.runtime or "-") for rt in runtimes]
    header = ("language", "version", "aliases", "runtime")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(3)]
    for row in (header, *rows):
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
        print(f"{cells}  {row[3]}", file=out)
    return 0
