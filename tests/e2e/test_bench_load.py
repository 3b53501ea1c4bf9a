"""End to end: ``mcp-checkpoint bench load`` drives a server over streamable HTTP and
verifies every acknowledged step (results asserted, never timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import run_cli, server_env
from tests.e2e.http_helpers import HttpServer, make_token

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def check(report: dict[str, object]) -> None:
    verification = report["verification"]
    assert isinstance(verification, dict)
    assert verification["ok"] is True
    assert verification["acknowledged"] > 0
    assert verification["acknowledged"] == verification["stored"]
    assert verification["lost"] == 0 and verification["duplicated"] == 0
    assert report["errors"] == {}
    tools = report["tools"]
    assert isinstance(tools, dict)
    assert tools["record_step"]["ms"]["n"] == verification["acknowledged"]
    assert report["search_mode"] == "hybrid"  # the suite's servers embed by hashing


@pytest.mark.parametrize("client", ["lean", "sdk"])
async def test_bench_load_against_a_running_server(tmp_path: Path, client: str) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    token = await make_token(env, "bench")
    out = tmp_path / "load.json"
    # bench load lifts the per-token rate quota on the servers it spawns; a running server
    # is the operator's, so this one is started with the quota lifted the same way (three
    # lean clients send several hundred requests a second, above the default 100).
    async with HttpServer(data, MCP_CHECKPOINT_HTTP__REQUESTS_PER_SECOND_PER_TOKEN="0") as server:
        code, stdout, err = await run_cli(
            "bench", "load", "--url", server.url, "--token", token, "--clients", "3",
            "--seconds", "2", "--rehydrate-every", "2", "--search-every", "3",
            "--client", client, "--json", str(out), env=env,
        )
    assert code == 0, err
    assert "verification:" in stdout and "-> OK" in stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    check(report)
    assert report["clients"] == 3 and report["client"] == client
    assert report["tools"]["rehydrate"]["ms"]["n"] > 0
    assert report["tools"]["search_memory"]["ms"]["n"] > 0


async def test_bench_load_spawns_its_own_server(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    code, _, err = await run_cli("bench", "load", "--spawn", "--clients", "2", "--seconds", "1",
                                 "--stateless", "--json", str(out),
                                 env=server_env(tmp_path / "unused"))
    assert code == 0, err
    check(json.loads(out.read_text(encoding="utf-8")))


async def test_bench_load_with_a_bad_token_fails_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with HttpServer(data) as server:
        code, _, err = await run_cli("bench", "load", "--url", server.url, "--token", "mcpck_x",
                                     "--clients", "1", "--seconds", "1", env=server.env)
    assert code == 1
    assert "mcp-checkpoint bench load: the server answered HTTP 401 (is the token valid?)" in err


async def test_bench_load_refuses_output_validation_without_the_sdk_client(
    tmp_path: Path,
) -> None:
    code, _, err = await run_cli("bench", "load", "--spawn", "--validate-output",
                                 env=server_env(tmp_path / "unused"))
    assert code == 2
    assert "--validate-output needs --client sdk" in err


async def test_bench_load_spreads_clients_over_replicas_sharing_one_store(
    tmp_path: Path,
) -> None:
    # Two server processes on one SQLite file; the ledger read through the first server
    # must hold every step acknowledged by either.
    stdout, report = await _spawned_load(tmp_path, "--replicas", "2")
    assert "spawned 2 servers on SQLite" in stdout
    assert report["servers"] == 2
    assert report["cpu"]["python_loop_ms"] > 0


async def test_bench_load_refuses_replicas_without_spawn(tmp_path: Path) -> None:
    code, _, err = await run_cli("bench", "load", "--url", "http://127.0.0.1:9/mcp",
                                 "--replicas", "2", env=server_env(tmp_path / "unused"))
    assert code == 2
    assert "--replicas needs --spawn" in err


async def test_bench_load_starts_the_clock_once_the_embedding_model_has_loaded(
    tmp_path: Path,
) -> None:
    # A spawned server loads its model in the background (seconds); the load must not
    # measure that, nor run its first searches without vectors.
    out = tmp_path / "load.json"
    env = server_env(tmp_path / "unused",
                     MCP_CHECKPOINT_EMBEDDINGS__PROVIDER="sentence-transformers")
    code, stdout, err = await run_cli("bench", "load", "--spawn", "--clients", "2",
                                      "--seconds", "1", "--json", str(out), env=env)
    assert code == 0, err
    report = json.loads(out.read_text(encoding="utf-8"))
    check(report)
    assert report["model_wait_seconds"] > 0
    assert "searches: hybrid (began after waiting" in stdout


async def test_bench_load_drives_a_server_of_two_workers(tmp_path: Path) -> None:
    stdout, report = await _spawned_load(tmp_path, "--workers", "2")
    assert "spawned server of 2 workers on SQLite (stateless)" in stdout
    assert report["cpu"]["server_ms_per_call"] > 0  # the workers' CPU, not the supervisor's


async def _spawned_load(tmp_path: Path, *flags: str) -> tuple[str, dict[str, Any]]:
    """``bench load --spawn FLAGS`` for 1 s with 4 clients, checked; (stdout, report)."""
    out = tmp_path / "load.json"
    code, stdout, err = await run_cli("bench", "load", "--spawn", *flags,
                                      "--clients", "4", "--seconds", "1", "--json", str(out),
                                      env=server_env(tmp_path / "unused"))
    assert code == 0, err
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    check(report)
    return stdout, report


async def test_bench_load_refuses_workers_without_spawn(tmp_path: Path) -> None:
    code, _, err = await run_cli("bench", "load", "--url", "http://127.0.0.1:9/mcp",
                                 "--workers", "2", env=server_env(tmp_path / "unused"))
    assert code == 2
    assert "--workers needs --spawn" in err
