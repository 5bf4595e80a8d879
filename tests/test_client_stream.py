"""Client.stream / AsyncClient.stream: routing to the local engine's live path, and the replayed fallback for
engines without one (SQL, Piston until its WebSocket path) — the same Result execute() gives, as events."""

from __future__ import annotations

import asyncio

import pytest

import codecapsule as cc
from codecapsule._events import Event, Finished, Output, RunStream, StageStarted, final_result
from tests.fakes.piston import PistonTestServer


def _stdout(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Output) and e.stream == "stdout")


def test_stream_runs_on_the_local_engine_live() -> None:
    with cc.Client() as client, client.stream("print(6 * 7)", "python", stdin="") as run:
        assert isinstance(run, RunStream)
        events = list(run)
    assert events[0] == StageStarted("run") and isinstance(events[-1], Finished)
    assert (_stdout(events), events[-1].result.engine, events[-1].result.verdict) == ("42\n", "local", "ok")


def test_sql_is_replayed_as_one_run_stage() -> None:
    with cc.Client() as client:
        plain = client.execute("SELECT 42 AS answer", "sql")
        with client.stream("SELECT 42 AS answer", "sql") as run:
            events = list(run)
    assert events[0] == StageStarted("run")
    result = final_result(iter(events))
    assert (result.engine, result.verdict, result.stdout) == ("duckdb", plain.verdict, plain.stdout)
    assert _stdout(events) == plain.stdout


def test_piston_is_replayed_until_it_has_a_live_path(piston_server: PistonTestServer) -> None:
    with cc.Client(piston_server.url) as client, client.stream("print('hi')", "python") as run:
        events = list(run)
    assert events[0] == StageStarted("run")
    assert (_stdout(events), final_result(iter(events)).engine) == ("hi\n", "piston")


def test_interactive_input_is_refused_where_the_engine_cannot_take_it() -> None:
    with cc.Client() as client, pytest.raises(cc.errors.InvalidRequest, match="interactive input"):
        client.stream("SELECT 1", "sql", interactive=True)


def test_bad_input_raises_as_execute_does() -> None:
    with cc.Client() as client, pytest.raises(cc.errors.UnknownLanguage):
        client.stream("x", "cobol")


def test_async_stream_local_and_sql() -> None:
    async def main() -> tuple[list[Event], list[Event]]:
        async with cc.AsyncClient() as client:
            async with client.stream("print('a')", "python") as run:
                local = [e async for e in run]
            async with client.stream("SELECT 1 AS one", "sql") as run:
                sql = [e async for e in run]
        return local, sql

    local, sql = asyncio.run(main())
    assert _stdout(local) == "a\n" and isinstance(local[-1], Finished) and local[-1].result.engine == "local"
    assert isinstance(sql[-1], Finished) and sql[-1].result.engine == "duckdb"
