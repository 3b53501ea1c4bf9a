"""Hardening benchmarks (issue 16), from a source checkout:

    python -m bench.hardening propose [--mode lexical|hybrid] [--sizes 100,10000]
                                      [--store-url URL]
    python -m bench.hardening healthz [--items 100] [--chars 8000]
    python -m bench.hardening flood [--seconds 10] [--clients 4] [--flood-clients 4]
    python -m bench.hardening halfopen [--count 20000]

``propose``: propose_memory p50 (5 items, wall and process CPU) at each size of the store,
in process, one store per size on SQLite (one tenant per size in the empty PostgreSQL
database ``--store-url`` names), the sizes measured in alternation; LoCoMo turns as
memories when ``--data`` names locomo-dev.json, else synthetic text. ``healthz``: how much one
propose_memory of ``--items`` items of ``--chars`` characters delays ``/healthz`` of the
same server (probed every 10 ms). ``flood``: record_step p99 of one tenant alone, then
while another tenant's token floods ``initialize`` from a process of its own
(``flooder``). ``halfopen``: ``/healthz`` latency from a new connection while ``--count``
connections (from ``halfopener`` processes) arrive and then sit in the middle of their
headers. Servers listen on 127.0.0.1 only; every
loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2

from bench._stats import write_json

ACCEPT = "application/json, text/event-stream"
_LISTENING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+)(/\w+)")


def _texts(data: Path | None, n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    turns: list[str] = []
    if data is not None and data.is_file():
        for conv in json.loads(data.read_text(encoding="utf-8")):
            for key, session in conv["conversation"].items():
                if isinstance(session, list):
                    turns += [f"{t['speaker']}: {t['text']}" for t in session
                              if isinstance(t, dict) and t.get("text")]
                    _ = key
    if not turns:
        words = [f"w{i}" for i in range(6000)]
        weights = [1 / (i + 1) for i in range(len(words))]
        turns = [" ".join(rng.choices(words, weights, k=rng.randint(10, 30))) for _ in range(500)]
    return [f"{turns[i % len(turns)]} (note {i})" for i in range(n)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# -- propose --------------------------------------------------------------------------


async def _propose(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    texts = _texts(args.data, max(sizes) + args.reps * 5 + 100)
    probes = texts[max(sizes):]
    with tempfile.TemporaryDirectory(prefix="mcpck-propose-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            return await _propose_in(args, Path(tmp), stack, sizes, texts, probes)


async def _propose_in(args: argparse.Namespace, tmp: Path, stack: contextlib.AsyncExitStack,
                      sizes: list[int], texts: list[str], probes: list[str]) -> dict[str, Any]:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.memory import MemoryService
    from mcp_checkpoint.core.models import BatchId, Proposal, ProposalItem, Tenant
    from mcp_checkpoint.embeddings import make_embedder
    from mcp_checkpoint.storage import make_store, make_vector_index

    provider = "sentence-transformers" if args.mode == "hybrid" else "none"
    embedder = make_embedder(Settings(data_dir=tmp, embeddings={"provider": provider}))
    if embedder is not None:
        embedder.start()
        await embedder.embed(["warm up"])
    services = {}
    for size in sizes:
        # One store per size (on PostgreSQL, one tenant per size in the one database),
        # so the sizes are measured in alternation: a change in the machine's load
        # then weighs on both alike.
        tenant = Tenant(f"bench-{size}")
        settings = Settings(data_dir=tmp / str(size),
                            embeddings={"provider": provider}, store_url=args.store_url)
        store = make_store(settings)
        await store.open()
        stack.push_async_callback(store.close)
        vectors = make_vector_index(settings, store) if embedder is not None else None
        if vectors is not None:
            await vectors.open()
            stack.push_async_callback(vectors.close)
        service = MemoryService(store, settings, embedder=embedder, vectors=vectors)
        for have in range(0, size, 1000):
            # Seeded as staged batches without analysis (the analysis is what is
            # measured, not what builds the store), committed as usual.
            batch = texts[have:min(size, have + 1000)]
            now = datetime.now(UTC)
            staged = await store.add_proposal(tenant, Proposal(
                batch_id=BatchId(f"seed-{have}"), run_id=None, status="pending",
                items=[ProposalItem(content=t) for t in batch], created_at=now,
                expires_at=now + timedelta(hours=1)))
            await service.commit(tenant, staged.batch_id)
        services[size] = (tenant, service)
        print(f"{args.mode}: seeded {size} memories", flush=True)
    wall: dict[int, list[float]] = {size: [] for size in sizes}
    cpu: dict[int, list[float]] = {size: [] for size in sizes}
    found = dict.fromkeys(sizes, 0)
    for rep in range(args.reps):
        items = [ProposalItem(content=t) for t in probes[rep * 5:rep * 5 + 5]]
        for size in (sizes if rep % 2 == 0 else sizes[::-1]):
            tenant, service = services[size]
            started, used = time.perf_counter(), time.process_time()
            staged = await service.propose(tenant, items)
            wall[size].append(time.perf_counter() - started)
            cpu[size].append(time.process_time() - used)
            # A probe repeats a stored turn (another note number) once the store holds
            # every turn: the analysis must name a stored memory for it.
            found[size] += sum(
                any(r.memory_id is not None for r in (*a.duplicates, *a.conflicts))
                for a in (item.analysis for item in staged.items) if a is not None)
    rows = []
    for size in sizes:
        row = {"memories": size, "p50_ms": _ms(statistics.median(wall[size])),
               "p90_ms": _ms(sorted(wall[size])[int(len(wall[size]) * 0.9)]),
               "cpu_p50_ms": _ms(statistics.median(cpu[size])),
               "stored_related_found": found[size], "items": args.reps * 5}
        rows.append(row)
        print(f"{args.mode}: {size} memories: propose(5) p50 {row['p50_ms']} ms, p90 "
              f"{row['p90_ms']} ms, CPU p50 {row['cpu_p50_ms']} ms; items naming a stored "
              f"near duplicate or conflict: {found[size]} of {args.reps * 5}", flush=True)
    ratio = rows[-1]["p50_ms"] / rows[0]["p50_ms"]
    cpu_ratio = rows[-1]["cpu_p50_ms"] / rows[0]["cpu_p50_ms"]
    print(f"ratio p50 {rows[-1]['memories']} / {rows[0]['memories']}: {ratio:.2f}, CPU "
          f"{cpu_ratio:.2f} (target <= 1.5)")
    return {"mode": args.mode, "rows": rows, "ratio": round(ratio, 3),
            "cpu_ratio": round(cpu_ratio, 3)}


# -- a spawned server -------------------------------------------------------------------


class _Server:
    def __init__(self, tmp: Path, *args: str, **env: str) -> None:
        self.tmp = tmp
        self.args = args
        self.env = {**os.environ, "MCP_CHECKPOINT_DATA_DIR": str(tmp / "data"),
                    "MCP_CHECKPOINT_LOG_LEVEL": "INFO", **env}
        self.url = ""
        self.base = ""
        self.process: Any = None

    async def __aenter__(self) -> _Server:
        log = self.tmp / "server.log"
        with log.open("wb") as err:
            self.process = await anyio.open_process(
                [sys.executable, "-m", "mcp_checkpoint", "serve", "--transport", "http",
                 "--port", "0", *self.args], env=self.env, stderr=err)
        with anyio.fail_after(120):
            for _ in range(10_000):  # polling the server's log for readiness
                text = log.read_text(errors="replace")
                found = _LISTENING.search(text)
                if found is not None and "startup complete" in text:
                    break
                await anyio.sleep(0.1)
        if found is None:
            raise RuntimeError("the server did not start")
        self.base = found.group(1)
        self.url = self.base + found.group(2)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.process.terminate()
        with anyio.move_on_after(30):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()


def _token(data: Path, tenant: str, scopes: list[str]) -> str:
    from mcp_checkpoint.server.bearer import TokenFile

    return TokenFile(data).create(tenant, scopes)[0]


async def _session(http: httpx2.AsyncClient, url: str, token: str) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    opened = await http.post(url, headers=auth, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}})
    opened.raise_for_status()
    headers = {**auth, "mcp-session-id": opened.headers["mcp-session-id"],
               "mcp-protocol-version": "2025-11-25"}
    await http.post(url, headers=headers,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


_REQUEST_IDS = itertools.count(1)


async def _call(http: httpx2.AsyncClient, url: str, headers: dict[str, str], name: str,
                arguments: dict[str, Any]) -> httpx2.Response:
    # A distinct JSON-RPC id per call: the server answers each request on the stream of
    # its id, so concurrent calls of one session that share an id wait for each other's
    # answers (this is what stalled the flood client before).
    return await http.post(url, headers=headers, json={
        "jsonrpc": "2.0", "id": next(_REQUEST_IDS), "method": "tools/call",
        "params": {"name": name, "arguments": arguments}})


# -- healthz ----------------------------------------------------------------------------


async def _healthz(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mcpck-healthz-") as tmp:
        token = _token(Path(tmp) / "data", "bench", ["read", "write"])
        async with _Server(Path(tmp), MCP_CHECKPOINT_EMBEDDINGS__PROVIDER="none") as server, \
                httpx2.AsyncClient(timeout=120) as http:
            headers = await _session(http, server.url, token)
            body = " ".join(_texts(args.data, 400))
            items = [{"content": f"item {i}: {body}"[:args.chars]} for i in range(args.items)]

            async def probe(seconds: float) -> list[float]:
                found = []
                end = time.monotonic() + seconds
                async with httpx2.AsyncClient(base_url=server.base, timeout=30) as prober:
                    while time.monotonic() < end:
                        started = time.perf_counter()
                        (await prober.get("/healthz")).raise_for_status()
                        found.append(time.perf_counter() - started)
                        await anyio.sleep(0.01)
                return found

            alone = await probe(3)
            during: list[float] = []
            took: list[float] = []

            async def propose() -> None:
                started = time.perf_counter()
                answer = await _call(http, server.url, headers, "propose_memory",
                                     {"items": items})
                took.append(time.perf_counter() - started)
                answer.raise_for_status()

            async with anyio.create_task_group() as tg:
                async def probing() -> None:
                    during.extend(await probe(0.5))
                    while not took:
                        during.extend(await probe(0.2))
                tg.start_soon(probing)
                await anyio.sleep(0.2)
                await propose()
    base = statistics.median(alone)
    worst = max(during)
    print(f"/healthz alone: p50 {_ms(base)} ms, max {_ms(max(alone))} ms; during a "
          f"propose_memory of {args.items} x {args.chars} chars ({_ms(took[0])} ms): max "
          f"{_ms(worst)} ms -> delay {_ms(worst - base)} ms (target <= 50)")
    return {"alone_p50_ms": _ms(base), "alone_max_ms": _ms(max(alone)),
            "during_max_ms": _ms(worst), "delay_ms": _ms(worst - base),
            "propose_ms": _ms(took[0])}


# -- flood ------------------------------------------------------------------------------


async def _flood(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mcpck-flood-") as tmp:
        data = Path(tmp) / "data"
        flooder = _token(data, "flood", ["read"])
        normal = _token(data, "normal", ["read", "write"])
        # The normal tenant's closed loop of --clients callers outruns a token's default
        # rate (100/s) on an idle machine, and would measure its own 429s: the rate quota
        # is lifted as `bench load` lifts it. The flooder meets the session quota.
        lifted = {"MCP_CHECKPOINT_HTTP__REQUESTS_PER_SECOND_PER_TOKEN": "0"}
        async with _Server(Path(tmp), MCP_CHECKPOINT_EMBEDDINGS__PROVIDER="none",
                           **lifted) as server, \
                httpx2.AsyncClient(timeout=60) as http:

            async def normal_mix(seconds: float, tag: str) -> tuple[list[float], int]:
                headers = await _session(http, server.url, normal)
                await _call(http, server.url, headers, "start_run",
                            {"objective": "bench", "run_id": tag})
                times: list[float] = []
                errors = 0
                end = time.monotonic() + seconds

                async def client(n: int) -> None:
                    nonlocal errors
                    i = 0
                    while time.monotonic() < end and i < 100_000:
                        i += 1
                        started = time.perf_counter()
                        answer = await _call(http, server.url, headers, "record_step",
                                             {"run_id": tag, "tool": f"c{n}-{i}"})
                        times.append(time.perf_counter() - started)
                        if answer.status_code != 200 or '"isError":true' in answer.text:
                            errors += 1
                            if errors <= 3:
                                print(f"error: {answer.status_code} {answer.text[:200]}",
                                      file=sys.stderr)

                async with anyio.create_task_group() as tg:
                    for n in range(args.clients):
                        tg.start_soon(client, n)
                return times, errors

            await normal_mix(1, "warm")
            alone, alone_errors = await normal_mix(args.seconds, "alone")
            # The flooding token is another client: its own process (its CPU is not the
            # normal client's event loop), started first, running past the measurement.
            report = Path(tmp) / "flood.json"
            flood = await anyio.open_process([
                sys.executable, "-m", "bench.hardening", "flooder", "--url", server.url,
                "--token", flooder, "--seconds", str(args.seconds + 3), "--clients",
                str(args.flood_clients), "--json", str(report)],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            await anyio.sleep(1.5)
            flooded, flooded_errors = await normal_mix(args.seconds, "flooded")
            with anyio.fail_after(60):
                await flood.wait()
            statuses = json.loads(report.read_text(encoding="utf-8"))

    def p99(values: list[float]) -> float:
        return sorted(values)[max(0, int(len(values) * 0.99) - 1)]

    ratio = p99(flooded) / p99(alone)
    print(f"normal tenant record_step ({args.clients} clients) alone: p50 "
          f"{_ms(statistics.median(alone))} ms, p99 {_ms(p99(alone))} ms ({len(alone)} calls, "
          f"{alone_errors} errors); while another token floods initialize from "
          f"{args.flood_clients} connections: p50 {_ms(statistics.median(flooded))} ms, p99 "
          f"{_ms(p99(flooded))} ms ({len(flooded)} calls, {flooded_errors} errors); "
          f"ratio {ratio:.2f} (target <= 2); flood answers by status {statuses}")
    return {"alone_p50_ms": _ms(statistics.median(alone)), "alone_p99_ms": _ms(p99(alone)),
            "flooded_p50_ms": _ms(statistics.median(flooded)),
            "flooded_p99_ms": _ms(p99(flooded)), "ratio": round(ratio, 3),
            "errors": flooded_errors + alone_errors, "flood_statuses": statuses}


async def _flooder(args: argparse.Namespace) -> dict[str, Any]:
    """The flooding client of ``flood``: ``--clients`` connections POST ``initialize``
    with ``--token`` back to back for ``--seconds``; the answers counted by status."""
    statuses: dict[str, int] = {}
    end = time.monotonic() + args.seconds
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "flood", "version": "1"}}}
    headers = {"Authorization": f"Bearer {args.token}", "Accept": ACCEPT}

    async def one() -> None:
        async with httpx2.AsyncClient(timeout=30) as other:
            for _ in range(1_000_000):
                if time.monotonic() >= end:
                    return
                try:
                    answer = await other.post(args.url, headers=headers, json=body)
                    key = str(answer.status_code)
                except httpx2.HTTPError as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1

    async with anyio.create_task_group() as tg:
        for _ in range(args.clients):
            tg.start_soon(one)
    return statuses


# -- half-open connections ---------------------------------------------------------------


async def _halfopen(args: argparse.Namespace) -> dict[str, Any]:
    # The connections come from opener processes of at most 10,000 each (a process's
    # open-file limit is 20,000 here and cannot be raised without privilege); the probes
    # run from this one throughout: while the connections arrive and once they all sit.
    with tempfile.TemporaryDirectory(prefix="mcpck-halfopen-") as tmp:
        async with _Server(Path(tmp), "--no-auth",
                           MCP_CHECKPOINT_EMBEDDINGS__PROVIDER="none") as server:
            started = time.monotonic()
            openers = []
            left = args.count
            while left > 0:
                n = min(left, 10_000)
                left -= n
                openers.append(await anyio.open_process(
                    [sys.executable, "-m", "bench.hardening", "halfopener", "--url",
                     server.base, "--count", str(n), "--seconds", "120"],
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}))
            ready: list[dict[str, Any]] = []

            async def wait_ready(process: Any) -> None:
                line = b""
                async for chunk in process.stdout:
                    line += chunk
                    if b"\n" in line:
                        break
                ready.append(json.loads(line.decode()))

            during: list[tuple[float, int]] = []
            after: list[tuple[float, int]] = []

            async def probe() -> tuple[float, int]:
                begun = time.perf_counter()
                try:
                    async with httpx2.AsyncClient(base_url=server.base, timeout=10) as http:
                        status = (await http.get("/healthz")).status_code
                except httpx2.HTTPError:
                    status = 0
                return time.perf_counter() - begun, status

            try:
                with anyio.fail_after(180):
                    async with anyio.create_task_group() as tg:
                        for process in openers:
                            tg.start_soon(wait_ready, process)
                        while len(ready) < len(openers):
                            during.append(await probe())
                            await anyio.sleep(0.25)
                    opened = time.monotonic() - started
                    for _ in range(8):
                        after.append(await probe())
                        await anyio.sleep(0.25)
            finally:
                for process in openers:
                    process.terminate()
                for process in openers:
                    with anyio.move_on_after(10):
                        await process.wait()
    held = sum(r["open"] for r in ready)
    worst_during = max((t for t, _ in during), default=0.0)
    worst_after = max(t for t, _ in after)
    print(f"{held} half-open connections ({sum(r['failed'] for r in ready)} failed) from "
          f"{len(openers)} processes in {opened:.1f} s; /healthz from a new connection while "
          f"they arrived: {len(during)} probes, worst {_ms(worst_during)} ms, statuses "
          f"{sorted({s for _, s in during})}; once all sat mid-headers: "
          f"{[(_ms(t), s) for t, s in after]} -> worst {_ms(worst_after)} ms (target < 1000)")
    return {"connections": held, "seconds_to_open": round(opened, 1),
            "during_worst_ms": _ms(worst_during),
            "during_statuses": sorted({s for _, s in during}),
            "after_ms": [_ms(t) for t, _ in after], "statuses": [s for _, s in after],
            "worst_ms": _ms(max(worst_during, worst_after))}


async def _halfopener(args: argparse.Namespace) -> dict[str, Any]:
    """One opener of ``halfopen``: ``--count`` connections to ``--url`` that send half a
    request's headers; prints a JSON line once they sit, holds them at most ``--seconds``
    (or until terminated)."""
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port = args.url.removeprefix("http://").split(":")
    socks: list[socket.socket] = []
    failed = 0
    for _ in range(min(args.count, hard - 100)):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect_ex((host, int(port)))
            socks.append(sock)
        except OSError:
            sock.close()
            failed += 1
    await anyio.sleep(1)
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    print(json.dumps({"open": len(socks), "failed": failed}), flush=True)
    try:
        await anyio.sleep(args.seconds)
    finally:
        for sock in socks:
            sock.close()
    return {}


def main(argv: list[str] | None = None) -> int:
    """Run one hardening benchmark; print its figures (and ``--json`` them)."""
    parser = argparse.ArgumentParser(prog="python -m bench.hardening")
    parser.add_argument("which", choices=["propose", "healthz", "flood", "halfopen", "flooder",
                                          "halfopener"])
    parser.add_argument("--mode", choices=["lexical", "hybrid"], default="lexical")
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--chars", type=int, default=8000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--store-url", default=None,
                        help="propose: a PostgreSQL URL (an empty database) instead of SQLite")
    parser.add_argument("--flood-clients", type=int, default=4)
    parser.add_argument("--url", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--data", type=Path,
                        default=Path("/work/shared/data/locomo/locomo-dev.json"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    run = {"propose": _propose, "healthz": _healthz, "flood": _flood,
           "halfopen": _halfopen, "flooder": _flooder,
           "halfopener": _halfopener}[args.which]
    report = asyncio.run(run(args))
    write_json(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
