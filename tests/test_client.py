"""Client/AsyncClient, the router, batches, settings and the public module functions."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import codecapsule as cc
from tests.fakes.piston import PistonTestServer


def test_module_level_execute_uses_the_local_engine_without_configuration() -> None:
    r = cc.execute("print(40 + 2)", "python")
    assert (r.stdout, r.ok, r.verdict, r.exit_code, r.engine) == ("42\n", True, "ok", 0, "local")


async def test_aexecute() -> None:
    r = await cc.aexecute("console.log(42)", "js")
    assert (r.stdout, r.verdict, r.language) == ("42\n", "ok", "javascript")


def test_sql_always_goes_to_duckdb_even_with_piston_configured(piston_server: PistonTestServer) -> None:
    with cc.Client(piston_server.url) as c:
        assert c.execute("SELECT 1 AS x", "sql").engine == "duckdb"
        assert c.execute("print(1)", "python").engine == "piston"
        assert c.execute("print(1)", "python", engine="local").engine == "local"
    assert [r.path for r in piston_server.requests() if r.path.endswith("/execute")] == ["/api/v2/execute"]


def test_piston_requested_without_a_url_names_the_fix() -> None:
    with (
        cc.Client(settings=cc.Settings(engine="piston")) as c,
        pytest.raises(cc.NoEndpointConfigured, match="CODECAPSULE_PISTON_URL"),
    ):
        c.execute("print(1)", "python")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODECAPSULE_PISTON_URL", "https://tunnel.example.edu/")
    monkeypatch.setenv("CODECAPSULE_TIMEOUT", "500ms")
    monkeypatch.setenv("CODECAPSULE_ACCESS_CLIENT_ID", "id.access")
    monkeypatch.setenv("CODECAPSULE_ACCESS_CLIENT_SECRET", "s3cr3t-value")
    s = cc.Settings.from_env()
    assert (s.piston_url, s.timeout, s.use_piston) == ("https://tunnel.example.edu", 0.5, True)
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in repr(cc.Client(settings=s))
    monkeypatch.setenv("CODECAPSULE_SQL_SANDBOX", "maybe")
    with pytest.raises(cc.ConfigurationError, match="CODECAPSULE_SQL_SANDBOX"):
        cc.Settings.from_env()


def test_the_warm_setting_reaches_the_local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cc.Settings.from_env({}).warm is True
    assert cc.Settings.from_env({"CODECAPSULE_WARM": "0"}).warm is False
    with pytest.raises(cc.ConfigurationError, match="CODECAPSULE_WARM"):
        cc.Settings.from_env({"CODECAPSULE_WARM": "lukewarm"})
    with cc.Client(settings=cc.Settings(engine="local", warm=False)) as c:
        assert c._local_engine().warm is False


def test_the_cache_settings_reach_the_local_engine(tmp_path: Path) -> None:
    from codecapsule._settings import DEFAULT_COMPILE_CACHE_SIZE, local_cache_dir, local_cache_size

    assert cc.Settings.from_env({}).compile_cache_size == DEFAULT_COMPILE_CACHE_SIZE == local_cache_size({})
    env = {"CODECAPSULE_COMPILE_CACHE_SIZE": "10MB", "CODECAPSULE_CACHE_DIR": str(tmp_path)}
    settings = cc.Settings.from_env(env, engine="local")
    assert (settings.compile_cache_size, settings.cache_dir) == (10_000_000, str(tmp_path))
    assert (local_cache_size(env), local_cache_dir(env)) == (10_000_000, str(tmp_path))
    with pytest.raises(cc.InvalidLimit, match="CODECAPSULE_COMPILE_CACHE_SIZE"):
        cc.Settings.from_env({"CODECAPSULE_COMPILE_CACHE_SIZE": "lots"})
    with cc.Client(settings=settings) as c:
        engine = c._local_engine()
        assert (engine.cache_dir, engine.compile_cache_size) == (str(tmp_path), 10_000_000)


def test_half_a_service_token_is_a_configuration_error() -> None:
    with pytest.raises(cc.ConfigurationError, match="both"):
        cc.Settings(access_client_id="only-the-id")


def test_client_default_limits_apply_unless_the_job_sets_them() -> None:
    with cc.Client(timeout=0.5) as c:
        assert c.job("x", "python").limits.run_timeout == 0.5
        assert c.job("x", "python", timeout=3).limits.run_timeout == 3.0
        assert c.execute("while True: pass", "python").verdict == "time_limit"


def test_execute_many_keeps_order_and_isolates_failures() -> None:
    jobs: list[cc.Job | dict[str, object]] = [
        {"source": f"print({i} * 2)", "language": "python", "name": f"s{i}"} for i in range(6)
    ]
    jobs.insert(2, {"source": "x", "language": "brainfudge", "name": "bad-language"})
    jobs.insert(4, cc.Job.create("int main(){return 3;}", "c", name="exit3"))
    with cc.Client() as c:
        results = c.execute_many(jobs, concurrency=3)
    assert [r.name for r in results] == ["s0", "s1", "bad-language", "s2", "exit3", "s3", "s4", "s5"]
    assert results[2].verdict == "internal_error" and isinstance(results[2].exception, cc.UnknownLanguage)
    assert results[4].verdict == "runtime_error" and results[4].exit_code == 3
    assert [r.stdout for r in results if r.name and r.name.startswith("s")] == [f"{i * 2}\n" for i in range(6)]


async def test_async_map_mirrors_execute_many() -> None:
    async with cc.AsyncClient() as ac:
        results = await ac.map([{"source": f"console.log({i})", "language": "js"} for i in range(4)], concurrency=2)
        sql = await ac.execute("SELECT 7 AS seven", "sql")
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert sql.table is not None and sql.table.rows == ((7,),)


def test_bad_concurrency() -> None:
    with cc.Client() as c, pytest.raises(cc.InvalidRequest):
        c.execute_many([], concurrency=0)
    with pytest.raises(cc.InvalidRequest):
        asyncio.run(cc.AsyncClient().map([], concurrency=0))


def test_import_is_light() -> None:
    code = (
        "import sys, codecapsule\n"
        "heavy = [m for m in ('duckdb', 'IPython', 'ipywidgets', 'pandas', 'httpx', 'azure', 'cloudflare', 'pyarrow')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api() -> None:
    for name in (
        "execute",
        "aexecute",
        "execute_many",
        "Client",
        "AsyncClient",
        "Result",
        "Verdict",
        "Cluster",
        "ClusterSpec",
        "Limits",
        "Job",
        "File",
        "errors",
        "UnknownLanguage",
        "PistonError",
    ):
        assert hasattr(cc, name), name
    assert issubclass(cc.InvalidLimit, ValueError)
    assert json.loads(cc.execute("print(1)", "python").to_json())["verdict"] == "ok"


def test_sql_cannot_be_sent_to_piston() -> None:
    with cc.Client() as c, pytest.raises(cc.InvalidRequest, match="DuckDB"):
        c.execute("SELECT 1", "sql", engine="piston")


def test_timeout_shortcut_covers_wall_and_cpu_time() -> None:
    job = cc.Job.create("x", "python", timeout=10)
    assert (job.limits.run_timeout, job.limits.run_cpu_time) == (10.0, 10.0)
    job = cc.Job.create("x", "python", timeout=10, limits={"run_cpu_time": 2})
    assert (job.limits.run_timeout, job.limits.run_cpu_time) == (10.0, 2.0)


def test_bad_environment_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODECAPSULE_TIMEOUT", "abc")
    with pytest.raises(cc.InvalidLimit, match="CODECAPSULE_TIMEOUT"):
        cc.Settings.from_env()
