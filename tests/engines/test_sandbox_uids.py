"""Per-run sandbox uids: never an account's uid, never held twice at once (also across engines/processes)."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from codecapsule import SandboxError
from codecapsule.engines._uids import UidPool


def test_uids_are_never_held_twice_and_skip_accounts(tmp_path: Path) -> None:
    accounts = {p.pw_uid for p in pwd.getpwall()}
    first, second = UidPool(range(64000, 64003), str(tmp_path)), UidPool(range(64000, 64003), str(tmp_path))
    with first.take() as a, second.take() as b, first.take() as c:
        assert len({a, b, c}) == 3 and not {a, b, c} & accounts
    with first.take() as again:  # released: usable again
        assert again in range(64000, 64003)


def test_a_full_pool_says_so(tmp_path: Path) -> None:
    pool = UidPool(range(64000, 64001), str(tmp_path))
    with (
        pool.take(),
        pytest.raises(SandboxError, match="in use by other runs"),
        UidPool(range(64000, 64001), str(tmp_path)).take(),
    ):
        pass
