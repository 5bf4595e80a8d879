"""The pool behind standbys and prepared sandboxes (``engines/_ready.py``), with plain items: at most ``ready_max``
wait, the oldest live one is taken, dead ones are stopped off the taker's thread, failures in a row stop the
preparing, and a closed pool prepares nothing and stops what it held."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from codecapsule.engines import _forker
from codecapsule.engines._ready import ReadyPool


@dataclass(eq=False)
class Item:
    number: int
    dead: bool = False
    stopped_on: list[int] = field(default_factory=list)  # the native ids of the threads that stopped it


class Pool(ReadyPool[Item]):
    def __init__(self, ready_max: int = 2, give_up: int | None = None, fail: bool = False) -> None:
        super().__init__(ready_max, give_up)
        self.fail = fail
        self.made: list[Item] = []
        self.made_on: set[int | None] = set()

    def make(self) -> Item:
        self.made_on.add(threading.get_native_id())
        if self.fail:
            raise OSError("cannot prepare one here")
        item = Item(len(self.made))
        self.made.append(item)
        return item

    def alive(self, item: Item) -> bool:
        return not item.dead

    def stop(self, item: Item) -> None:
        item.stopped_on.append(threading.get_native_id())


def filled(pool: Pool, times: int) -> list[Item]:
    for _ in range(times):
        pool.refill()
    return pool.wait_prepared()


def test_at_most_ready_max_wait_and_all_are_made_on_the_forker_thread() -> None:
    pool = Pool(ready_max=2)
    assert [i.number for i in filled(pool, 5)] == [0, 1]
    assert pool.made_on == {_forker.native_id()}


def test_take_gives_the_oldest_live_item_and_stops_the_dead_ones_elsewhere() -> None:
    pool = Pool(ready_max=3)
    first, second, third = filled(pool, 3)
    first.dead = second.dead = True
    assert pool.take() is third
    assert _forker.wait_idle()
    assert first.stopped_on == second.stopped_on == [_forker.native_id()]
    assert third.stopped_on == [] and pool.take() is None


def test_failures_in_a_row_stop_the_preparing_and_a_success_resets_the_count() -> None:
    pool = Pool(give_up=2, fail=True)
    filled(pool, 1)
    assert pool.failures == 1
    pool.fail = False
    assert len(filled(pool, 1)) == 1 and pool.failures == 0  # one failure is not the end
    pool.take()
    pool.fail = True
    filled(pool, 1)
    filled(pool, 1)
    assert pool.failures == 2
    pool.fail = False
    assert filled(pool, 3) == [] and pool.failures == 2  # given up: nothing more is tried


def test_a_closed_pool_stops_what_waits_and_prepares_nothing_more() -> None:
    pool = Pool()
    waiting = filled(pool, 2)
    pool.close()
    assert all(item.stopped_on for item in waiting) and pool.ready == []
    assert filled(pool, 2) == [] and len(pool.made) == 2


def test_closing_without_waiting_stops_on_the_forker_thread_after_what_was_queued() -> None:
    pool = Pool()
    pool.refill()  # queued before the close: made, then found closed, then stopped
    pool.close(wait=False)
    assert _forker.wait_idle()
    assert pool.ready == [] and all(item.stopped_on == [_forker.native_id()] for item in pool.made)


def test_release_stops_what_waits_but_a_later_refill_prepares_again() -> None:
    pool = Pool()
    waiting = filled(pool, 2)
    pool.release()
    assert all(item.stopped_on for item in waiting) and pool.ready == []
    assert [i.number for i in filled(pool, 1)] == [2]
