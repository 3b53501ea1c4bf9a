"""``python -m bench load``: N concurrent clients against a server over streamable HTTP.

Each client starts its own run, then until the time is up records steps (each with a
unique idempotency key), and every few steps rehydrates its run or searches memory. The
report gives throughput, p50/p99 latency per tool and errors. Afterwards every run's
ledger is read back through the ``ledger://`` resource and checked: every acknowledged
step must be stored exactly once (same key, same sequence number); nothing acknowledged
may be lost, nothing stored twice.

``--url URL --token T`` drives a running server; ``--spawn`` starts one (``serve
--transport http`` on a loopback port, in a temporary data directory, with a fresh token)
so the figures can be reproduced with one command. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

from bench._lean import LeanClient, ToolAnswer
from bench._stats import emit, summary

__all__ = ["add_arguments", "main"]

TARGET_RECORD_STEPS_PER_SECOND = 300.0
_LISTENING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+/mcp)")
_MEMORIES = [
    "The staging database is reset every night at 02:00 UTC.",
    "Deployments to production need two approvals in the release channel.",
    "The flaky login test depends on the clock of the CI runner.",
    "Use the retry helper for calls to the payment gateway; it backs off exponentially.",
    "Feature flags live in config/flags.yaml and are reloaded without a restart.",
]
_QUERIES = ["database reset", "production deployment approvals", "flaky login test",
            "payment gateway retries", "feature flags reload"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench load``."""
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", action="append", dest="urls", metavar="URL",
                        help="the server's MCP endpoint, e.g. http://127.0.0.1:8000/mcp; "
                        "repeat for replicas sharing one store (clients take turns)")
    target.add_argument("--spawn", action="store_true",
                        help="start a local server (temporary data dir; SQLite there, or "
                        "the store $MCP_CHECKPOINT_STORE_URL names) and drive it")
    parser.add_argument("--token", default=os.environ.get("MCP_CHECKPOINT_BENCH_TOKEN"),
                        help="bearer token (read,write) (default: $MCP_CHECKPOINT_BENCH_TOKEN)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to drive load")
    parser.add_argument("--rehydrate-every", type=int, default=10,
                        help="each client rehydrates after this many steps")
    parser.add_argument("--search-every", type=int, default=10,
                        help="each client searches memory after this many steps")
    parser.add_argument("--replicas", type=int, default=1,
                        help="with --spawn: this many server processes on the same store, "
                        "clients spread over them (as behind a load balancer)")
    parser.add_argument("--stateless", action="store_true",
                        help="with --spawn: serve streamable HTTP in stateless mode")
    parser.add_argument("--workers", type=int, default=1,
                        help="with --spawn: each server runs this many worker processes on "
                        "one port (serve --workers; implies --stateless)")
    parser.add_argument("--client", choices=["lean", "sdk"], default="lean",
                        help="lean: one raw streamable-HTTP POST per call (little client CPU "
                        "on the server's cores); sdk: the MCP SDK client (default: lean)")
    parser.add_argument("--validate-output", action="store_true",
                        help="clients re-validate results against output schemas (jsonschema; "
                        "costs client CPU on the same cores as the server)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")


@dataclass
class _ClientResult:
    run_id: str
    acked: dict[str, int] = field(default_factory=dict)  # idempotency key -> seq
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)


class _CallFailed(Exception):
    pass


def _text(result: Any) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


@asynccontextmanager
async def _connect(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx2.Timeout(60.0, read=120.0)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http, Client(
        streamable_http_client(url, http_client=http), read_timeout_seconds=120
    ) as client:
        if not _VALIDATE_OUTPUT:
            client.session.validate_tool_result = _skip_validation  # type: ignore[method-assign]
        yield client


# The SDK client re-validates every structured result against the tool's output schema with
# jsonschema (~5-10 ms of client CPU per call here), and the clients share the machine's
# two cores with the server. The load benchmark measures the server, which validates its
# own output with pydantic, so the clients skip it unless --validate-output is given.
_VALIDATE_OUTPUT = False


async def _skip_validation(name: str, result: Any) -> None:
    return None


_Caller = Callable[[str, dict[str, Any]], Awaitable[ToolAnswer]]


@asynccontextmanager
async def _caller(url: str, token: str | None, kind: str) -> AsyncIterator[_Caller]:
    """Calls tools through the lean client or the SDK client, as ``ToolAnswer``."""
    if kind == "lean":
        lean = LeanClient(url, {"Authorization": f"Bearer {token}"} if token else {})
        try:
            yield lean.call_tool
        finally:
            await lean.aclose()
        return

    async with _connect(url, token) as client:
        async def call(name: str, args: dict[str, Any]) -> ToolAnswer:
            result = await client.call_tool(name, args)
            return ToolAnswer(result.is_error, result.structured_content, _text(result))

        yield call


async def _call(call: _Caller, out: _ClientResult, name: str, args: dict[str, Any]) -> Any:
    start = time.perf_counter()
    try:
        result = await call(name, args)
    except Exception as exc:
        out.errors[f"{name}: {type(exc).__name__}"] += 1
        raise _CallFailed from exc
    out.latencies.setdefault(name, []).append((time.perf_counter() - start) * 1000.0)
    if result.is_error:
        out.errors[f"{name}: {result.text.split(':', 1)[0]}"] += 1
        raise _CallFailed
    if result.structured is None:
        out.errors[f"{name}: no structured content"] += 1
        raise _CallFailed
    return result.structured


async def _drive(url: str, token: str | None, n: int, prefix: str, deadline: float,
                 args: argparse.Namespace) -> _ClientResult:
    out = _ClientResult(run_id=f"{prefix}-c{n:02d}")
    try:
        async with _caller(url, token, args.client) as client:
            await _call(client, out, "start_run", {
                "objective": f"load client {n}: keep recording steps", "run_id": out.run_id,
            })
            i = 0
            while time.monotonic() < deadline:
                i += 1
                key = f"{out.run_id}-{i}"
                try:
                    ack = await _call(client, out, "record_step", {
                        "run_id": out.run_id, "tool": "bash",
                        "input": {"cmd": f"pytest -k case_{i}", "k": key},
                        "output": {"exit": 0, "lines": i % 7},
                        "idempotency_key": key,
                    })
                    out.acked[key] = int(ack["seq"])
                    if i % args.rehydrate_every == 0:
                        await _call(client, out, "rehydrate",
                                    {"run_id": out.run_id, "budget_tokens": 2000})
                    if i % args.search_every == 0:
                        await _call(client, out, "search_memory",
                                    {"query": _QUERIES[i % len(_QUERIES)], "k": 3})
                except _CallFailed:
                    continue
    except Exception as exc:  # a connection that failed outright: counted, not fatal
        out.errors[f"connection: {type(exc).__name__}"] += 1
    return out


async def _preflight(url: str, token: str | None) -> None:
    """Fail early and clearly when the server refuses the token (the SDK client reports a
    refused connection only as a generic error)."""
    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(url, headers=headers,
                                   content=b'{"jsonrpc":"2.0","id":0,"method":"ping"}')
    if response.status_code in (401, 403):
        hint = "is the token valid?" if response.status_code == 401 else "needs read,write"
        raise RuntimeError(f"the server answered HTTP {response.status_code} ({hint})")


async def _seed(url: str, token: str | None) -> None:
    async with _connect(url, token) as client:
        result = await client.call_tool("propose_memory", {
            "items": [{"content": text, "kind": "fact"} for text in _MEMORIES]})
        if result.is_error or result.structured_content is None:
            raise RuntimeError(f"seeding memories failed: {_text(result)}")
        batch = result.structured_content["batch_id"]
        done = await client.call_tool("commit_memory", {"batch_id": batch})
        if done.is_error:
            raise RuntimeError(f"committing memories failed: {_text(done)}")


_SETTLE_SECONDS = 300.0


async def _settle(url: str, token: str | None) -> tuple[float, str]:
    """Wait until the server's searches no longer wait for an embedding model that is still
    loading (a server that loads one competes with the load for the CPU, and the first
    searches would measure its load) nor for the seeded memories' vectors: (seconds
    waited, the search mode then)."""
    started = time.monotonic()
    async with _connect(url, token) as client:
        while True:
            result = await client.call_tool("search_memory", {"query": _MEMORIES[0], "k": 1})
            found = result.structured_content
            if result.is_error or found is None:
                raise RuntimeError(f"searching the seeded memories failed: {_text(result)}")
            waited = time.monotonic() - started
            note = str(found.get("note", ""))
            if "still loading" in note:
                if waited > _SETTLE_SECONDS:
                    raise RuntimeError(
                        f"the embedding model was still loading after {waited:.0f} s")
            # Just loaded: the server gives the seeded memories their vectors next.
            elif "no memory has a vector yet" not in note or waited > _SETTLE_SECONDS / 10:
                return waited, str(found.get("mode"))
            await anyio.sleep(0.25)


async def _verify(url: str, token: str | None, results: list[_ClientResult]) -> dict[str, Any]:
    """Read every run's ledger back; compare with what was acknowledged."""
    acked = stored = lost = duplicated = mismatched = unacked_stored = 0
    async with _connect(url, token) as client:
        for res in results:
            keys: Counter[str] = Counter()
            seq_of: dict[str, int] = {}
            cursor = ""
            while True:
                page = await client.read_resource(f"ledger://{res.run_id}?cursor={cursor}"
                                                  f"&limit=500")
                body = json.loads(page.contents[0].text)  # type: ignore[union-attr]
                for step in body["steps"]:
                    key = step.get("idempotency_key")
                    if key:
                        keys[key] += 1
                        seq_of[key] = step["seq"]
                if body["next_cursor"] is None:
                    break
                cursor = body["next_cursor"]
            acked += len(res.acked)
            stored += sum(keys.values())
            duplicated += sum(c - 1 for c in keys.values() if c > 1)
            for key, seq in res.acked.items():
                if keys.get(key, 0) == 0:
                    lost += 1
                elif seq_of[key] != seq:
                    mismatched += 1
            unacked_stored += sum(1 for k in keys if k not in res.acked)
    return {"acknowledged": acked, "stored": stored, "lost": lost, "duplicated": duplicated,
            "seq_mismatched": mismatched, "stored_but_not_acknowledged": unacked_stored,
            "ok": lost == 0 and duplicated == 0 and mismatched == 0}


def _children(pids: Sequence[int]) -> list[int]:
    """The running child processes of ``pids`` (a server's workers); [] if unknown."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) in pids:
            found.append(int(stat.parent.name))
    return found


def _cpu_seconds(pids: Sequence[int]) -> float | None:
    """CPU time (user + system) the processes have used so far; None when unknown (not
    Linux, or no process: the server is remote)."""
    if not pids:
        return None
    total = 0.0
    for pid in [*pids, *_children(pids)]:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _loop_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 3): how fast this machine's cores
    are right now. Shared cloud cores vary from day to day (up to 2x here), so reports
    compare only with this figure beside them."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@asynccontextmanager
async def _spawned(stateless: bool, replicas: int, workers: int
                   ) -> AsyncIterator[tuple[list[str], str, list[int]]]:
    """``replicas`` local ``serve --transport http`` processes (each with ``workers``
    worker processes) sharing a temporary data dir (and the store it or the environment
    names); (urls, token, pids)."""
    from mcp_checkpoint.server.bearer import TokenFile

    with tempfile.TemporaryDirectory(prefix="mcpck-load-") as tmp:
        data = Path(tmp) / "data"
        token, _ = TokenFile(data).create("bench", ["read", "write"], name="bench load")
        # One token drives every client: the per-token quotas (made for many callers
        # sharing a server) are lifted, or the benchmark would measure its own 429s.
        env = {"MCP_CHECKPOINT_HTTP__REQUESTS_PER_SECOND_PER_TOKEN": "0",
               "MCP_CHECKPOINT_HTTP__MAX_CONCURRENT_REQUESTS_PER_TOKEN": "0",
               "MCP_CHECKPOINT_HTTP__MAX_SESSIONS_PER_TOKEN": "0",
               "MCP_CHECKPOINT_HTTP__MAX_SESSIONS_PER_TENANT": "0",
               **os.environ, "MCP_CHECKPOINT_DATA_DIR": str(data),
               "MCP_CHECKPOINT_LOG_LEVEL": "WARNING"}
        command = [sys.executable, "-m", "mcp_checkpoint", "serve", "--transport", "http",
                   "--port", "0", *(["--stateless"] if stateless or workers > 1 else []),
                   "--workers", str(workers)]
        processes: list[anyio.abc.Process] = []
        urls: list[str] = []
        try:
            for n in range(replicas):  # one after the other: the first one migrates
                log = Path(tmp) / f"server-{n}.log"
                with log.open("wb") as errlog:
                    process = await anyio.open_process(command, env=env, stderr=errlog)
                processes.append(process)
                urls.append(await _listening(process, log))
            yield urls, token, [p.pid for p in processes]
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                with anyio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.kill()


def _text_of(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


async def _listening(process: anyio.abc.Process, log: Path) -> str:
    """The URL a spawned server listens on, once its /healthz answers."""
    with anyio.fail_after(60):
        while not (found := _LISTENING.search(_text_of(log))):
            if process.returncode is not None:
                raise RuntimeError(f"the server exited: {_text_of(log)[-2000:]}")
            await anyio.sleep(0.05)
        url = found.group(1)
        async with httpx2.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(url.removesuffix("/mcp") + "/healthz")).is_success:
                        return url
                except httpx2.TransportError:
                    pass
                await anyio.sleep(0.05)


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    global _VALIDATE_OUTPUT
    _VALIDATE_OUTPUT = args.validate_output
    if args.spawn:
        url_setting = os.environ.get("MCP_CHECKPOINT_STORE_URL", "")
        store = "PostgreSQL" if url_setting.startswith(("postgresql:", "postgres:")) else (
            "SQLite" if not url_setting or url_setting.startswith("sqlite:") else url_setting
            .split(":", 1)[0])
        servers = "server" if args.replicas == 1 else f"{args.replicas} servers"
        if args.workers > 1:
            servers += f" of {args.workers} workers"
        async with _spawned(args.stateless, args.replicas, args.workers) as (urls, token, pids):
            return await _load(urls, token, args, f"spawned {servers} on {store}" +
                               (" (stateless)" if args.stateless or args.workers > 1 else ""),
                               pids)
    return await _load(args.urls, args.token, args, " + ".join(args.urls), [])


async def _load(urls: list[str], token: str | None, args: argparse.Namespace,
                target: str, server_pids: list[int]) -> dict[str, Any]:
    url = urls[0]  # replicas share the store: seeding and verifying go through one
    for each in urls:
        await _preflight(each, token)
    await _seed(url, token)
    # With worker processes, each connection reaches one of them: settle through several
    # at once, so that every worker has most likely loaded its model.
    probes = [each for each in urls for _ in range(4 * args.workers if args.workers > 1 else 1)]
    settled: list[tuple[float, str]] = []

    async def settle(each: str) -> None:
        settled.append(await _settle(each, token))

    async with anyio.create_task_group() as group:
        for each in probes:
            group.start_soon(settle, each)
    loop_ms = _loop_ms()
    server_cpu = _cpu_seconds(server_pids)
    client_cpu = _own_cpu_seconds()
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    results: list[_ClientResult] = []
    started = time.monotonic()
    deadline = started + args.seconds

    async def one(n: int) -> None:
        results.append(await _drive(urls[n % len(urls)], token, n, prefix, deadline, args))

    async with anyio.create_task_group() as tg:
        for n in range(args.clients):
            tg.start_soon(one, n)
    elapsed = time.monotonic() - started
    server_cpu_end = _cpu_seconds(server_pids)
    client_cpu = _own_cpu_seconds() - client_cpu
    calls = sum(len(v) for r in results for v in r.latencies.values())
    cpu = {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python_loop_ms": loop_ms,
        "client_ms_per_call": round(client_cpu * 1000 / calls, 2) if calls else None,
        "server_ms_per_call": round((server_cpu_end - server_cpu) * 1000 / calls, 2)
        if calls and server_cpu is not None and server_cpu_end is not None else None,
    }
    verification = await _verify(url, token, results)
    tools: dict[str, Any] = {}
    for name in ("record_step", "rehydrate", "search_memory"):
        values = [v for r in results for v in r.latencies.get(name, [])]
        tools[name] = {"per_second": round(len(values) / elapsed, 1), "ms": summary(values)}
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r.errors)
    return {
        "target": target,
        "client": args.client,
        "clients": args.clients,
        "servers": len(urls),
        "seconds": round(elapsed, 2),
        "search_mode": settled[0][1],
        "model_wait_seconds": round(max(waited for waited, _ in settled), 1),
        "tools": tools,
        "errors": dict(errors),
        "cpu": cpu,
        "verification": verification,
        "targets": {"record_step_per_second": TARGET_RECORD_STEPS_PER_SECOND,
                    "errors": 0, "lost": 0},
    }


def render(report: dict[str, Any]) -> str:
    """The report as a table."""
    lines = [f"bench load: {report['clients']} {report['client']} clients, "
             f"{report['seconds']} s, {report['target']}",
             f"searches: {report['search_mode']} (began after waiting "
             f"{report['model_wait_seconds']} s for the embedding model)", "",
             f"{'tool':<15} {'calls/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'calls':>8}"]
    for name, row in report["tools"].items():
        ms = row["ms"]
        lines.append(f"{name:<15} {row['per_second']:>9} {ms['p50'] or '-':>9} "
                     f"{ms['p99'] or '-':>9} {ms['n']:>8}")
    cpu = report["cpu"]
    lines += ["", f"CPU per tool call: server {cpu['server_ms_per_call'] or '?'} ms, clients "
              f"{cpu['client_ms_per_call']} ms (load average {cpu['load_average_1m']} on "
              f"{os.cpu_count()} cores)",
              f"core speed: a 2M-iteration Python loop took {cpu['python_loop_ms']} ms"]
    errors = report["errors"]
    lines += ["", "errors: " + (", ".join(f"{k} x{v}" for k, v in errors.items()) or "none")]
    v = report["verification"]
    lines.append(
        f"verification: {v['acknowledged']} acknowledged, {v['stored']} stored, "
        f"{v['lost']} lost, {v['duplicated']} duplicated, {v['seq_mismatched']} with another "
        f"seq, {v['stored_but_not_acknowledged']} stored but not acknowledged -> "
        + ("OK" if v["ok"] else "FAILED")
    )
    rate = report["tools"]["record_step"]["per_second"]
    lines.append(f"target: >= {TARGET_RECORD_STEPS_PER_SECOND:.0f} record_step/s with zero "
                 f"errors and zero lost steps -> "
                 + ("met" if rate >= TARGET_RECORD_STEPS_PER_SECOND and not errors and v["ok"]
                    else "MISSED"))
    return "\n".join(lines)


def _describe(exc: BaseException) -> str:
    """The innermost cause, readable (task groups wrap the real error)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, RuntimeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def main(args: argparse.Namespace) -> int:
    """Run the load; exit 0 when it ran and verified, 1 when steps were lost or duplicated
    or it could not run."""
    if args.clients < 1 or args.seconds <= 0:
        sys.stderr.write("mcp-checkpoint bench load: --clients and --seconds must be positive\n")
        return 2
    if args.replicas < 1 or (args.replicas > 1 and not args.spawn):
        sys.stderr.write("mcp-checkpoint bench load: --replicas needs --spawn and a positive "
                         "count (give --url once per running replica instead)\n")
        return 2
    if args.workers < 1 or (args.workers > 1 and not args.spawn):
        sys.stderr.write("mcp-checkpoint bench load: --workers needs --spawn and a positive "
                         "count\n")
        return 2
    if args.validate_output and args.client != "sdk":
        sys.stderr.write("mcp-checkpoint bench load: --validate-output needs --client sdk\n")
        return 2
    try:
        report = anyio.run(_bench, args)
    except Exception as exc:
        sys.stderr.write(f"mcp-checkpoint bench load: {_describe(exc)}\n")
        return 1
    emit(render(report), report, args.json)
    return 0 if report["verification"]["ok"] else 1
