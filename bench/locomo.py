"""``python -m bench locomo``: memory retrieval on LoCoMo, through a real stdio client.

The data (``--data``, the LoCoMo JSON) is read where it lies and never copied. For each mode
a fresh ``mcp-checkpoint serve`` subprocess starts on a fresh temporary SQLite file, with the
embedding provider set explicitly in its environment (nothing else is inherited):

* ``lexical``: ``embeddings.provider = none`` (FTS5 BM25 only);
* ``hybrid``: ``embeddings.provider = sentence-transformers`` (the packaged
  all-MiniLM-L6-v2, fused with BM25 by ``core.fusion``).

Each mode then does what an agent would, through the tools only:

1. *Ingest*: every turn of every conversation becomes one memory, ``"{speaker}: {text}"``
   (a remembered turn says who said it; the questions name people), scope
   ``conv:{sample_id}``, kind ``fact``, ``source_refs = [dia_id]`` (the provenance that maps
   hits back to turns). One ``start_run`` per conversation, then ``propose_memory`` batches
   and ``commit_memory`` of each batch, accepting every item (each turn is a distinct event,
   even where the analysis suggests skipping a near duplicate such as "Thanks!"). In hybrid
   mode the benchmark first waits until the model is loaded (a probe memory in its own
   scope, polled with ``search_memory`` until its mode is ``hybrid``, then deprecated), so
   commits embed synchronously and the ingest rate includes embedding.
2. *Search*: every question of categories 1-4 whose evidence names a turn of its
   conversation (category 5 is adversarial) is asked with
   ``search_memory(query=question, scope=conv:{sample_id}, k=K)``; hits map to turns by
   ``source_refs``. Before the first question the benchmark polls until ``mode`` is
   ``hybrid`` (hybrid mode; bounded) and it records the mode of every answer.
3. *Rehydrate*: per question, ``start_run(objective=question)`` then
   ``rehydrate(budget_tokens=1764, query=question)``. The share of evidence turns whose
   memory is listed in ``memories_included`` *and* whose text appears in the context is the
   evidence recall inside that budget. Rehydrate searches every scope (it has no scope
   argument), so memories of other conversations compete; the report says how many got in.

Metrics (the project's retrieval-only metric, data/README.md): turn recall@k = share of a
question's evidence turns among the top k hits, averaged over questions; session recall@5
= share of the evidence's sessions ("D3:7" is session 3) that some top-5 hit belongs to;
NDCG@10 with binary relevance over evidence turns. Latencies are client-side (request to
validated result). After each server exits, the SQLite file is opened to count the
memories that hold a vector and from which model.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from bench._client import BenchError, TimedClient, spawn_server
from bench._locomo_data import (
    CATEGORIES,
    QUICK_QUESTIONS,
    Conversation,
    Scored,
    Turn,
    _figures,
    _latency,
    _quick,
    load_locomo,
    score,
)
from bench._stats import emit
from mcp_checkpoint import __version__
from mcp_checkpoint.config import Settings, VectorSettings
from mcp_checkpoint.core.models import MemoryId, Tenant
from mcp_checkpoint.errors import CheckpointError
from mcp_checkpoint.storage import make_store, make_vector_index
from mcp_checkpoint.storage._urls import mask_url

__all__ = ["add_arguments", "main"]

TENANT = Tenant("bench")
# Targets (the benchmark's brief). Reported, never asserted.
TARGET_HYBRID_RECALL5 = 0.60
TARGET_LEXICAL_RECALL5 = 0.52
TARGET_SEARCH_P50_MS = 20.0
REHYDRATE_BUDGET = 1764
# Published and measured reference points (data/README.md; the fusion study's offline
# replica of the product's method on this same split).
REFERENCES = (
    ("stdlib BM25, this dev split", "0.521", "0.589", "0.801"),
    ("dense MiniLM alone, full 10-conversation set", "0.362", "", ""),
    ("naive RRF (BM25 + MiniLM), full set", "0.468", "", ""),
    ("fusion study, offline replica: lexical (porter+stop)", "0.538", "0.605", "0.815"),
    ("fusion study, offline replica: hybrid (convex 0.5)", "0.577", "0.666", "0.821"),
)

BATCH_ITEMS = 50  # under the server's limits.max_batch_items (100)
SEMANTIC_WAIT_SECONDS = 120.0
_POLL_SECONDS = 0.25
_WARMUP_SEARCHES = 3
_PROBE_SCOPE = "bench:probe"


@dataclass(frozen=True)
class Mode:
    """A server configuration to measure."""

    name: Literal["lexical", "hybrid"]
    provider: Literal["none", "sentence-transformers"]


MODES = (Mode("lexical", "none"), Mode("hybrid", "sentence-transformers"))


def _k(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError("k must lie in 1..50 (the server's limits.max_search_k)")
    return value


def _modes(raw: str) -> tuple[Mode, ...]:
    wanted = [name.strip() for name in raw.split(",") if name.strip()]
    known: dict[str, Mode] = {mode.name: mode for mode in MODES}
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"modes are a comma-separated choice of {', '.join(known)}; got {raw!r}"
        )
    return tuple(known[name] for name in dict.fromkeys(wanted))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bench locomo``."""
    parser.add_argument(
        "--data", required=True, type=Path, help="the LoCoMo JSON (e.g. locomo-dev.json)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke-test scale: the first conversation and its first {QUICK_QUESTIONS} "
        "questions (default: every conversation and question)",
    )
    parser.add_argument(
        "--k",
        type=_k,
        default=10,
        help="hits asked of search_memory (default 10; recall@10 and NDCG@10 count only "
        "the hits returned)",
    )
    parser.add_argument(
        "--store-url",
        metavar="URL",
        help="the store every mode uses instead of a fresh temporary SQLite file, e.g. "
        "postgresql://user@host/db (each mode writes under a new tenant of its own)",
    )
    parser.add_argument(
        "--modes",
        default="lexical,hybrid",
        type=_modes,
        help="comma-separated modes to run (default lexical,hybrid; hybrid needs the "
        "embeddings extra)",
    )


# -- one mode through the client -----------------------------------------------------------


@dataclass
class ModeTally:
    """What one mode observed."""

    memories: int = 0
    ingest_seconds: float = 0.0
    propose_ms: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)
    suggested: Counter[str] = field(default_factory=Counter)
    model_wait_seconds: float | None = None
    search_ms: list[float] = field(default_factory=list)
    search_modes: Counter[str] = field(default_factory=Counter)
    foreign_hits: int = 0
    scored: list[Scored] = field(default_factory=list)
    rehydrate_ms: list[float] = field(default_factory=list)
    rehydrate_recall: list[float] = field(default_factory=list)
    rehydrate_tokens: list[int] = field(default_factory=list)
    rehydrate_over_budget: int = 0
    memories_shown: list[int] = field(default_factory=list)
    shown_other_conversation: int = 0
    shown_text_missing: int = 0
    # memory id -> (sample_id, content); (sample_id, dia_id) -> memory id
    memory_of: dict[str, tuple[str, str]] = field(default_factory=dict)
    by_turn: dict[tuple[str, str], str] = field(default_factory=dict)


def _batches(turns: Sequence[Turn], size: int) -> Iterator[Sequence[Turn]]:
    for start in range(0, len(turns), size):
        yield turns[start : start + size]


def _progress(message: str) -> None:
    sys.stderr.write(f"bench locomo: {message}\n")
    sys.stderr.flush()


async def _commit(client: TimedClient, items: list[dict[str, Any]], run_id: str | None,
                  tally: ModeTally | None) -> tuple[dict[str, Any], dict[str, str]]:
    """propose_memory then commit_memory of every item; (proposal, memory id by index)."""
    args: dict[str, Any] = {"items": items}
    if run_id is not None:
        args["run_id"] = run_id
    proposal, propose_ms = await client.call("propose_memory", args)
    done, commit_ms = await client.call("commit_memory", {"batch_id": proposal["batch_id"]})
    if done["status"] != "committed" or len(done["accepted"]) != len(items):
        raise BenchError(
            f"batch {proposal['batch_id']}: {done['status']}, accepted {len(done['accepted'])}"
            f" of {len(items)} items"
        )
    if tally is not None:
        tally.propose_ms.append(propose_ms)
        tally.commit_ms.append(commit_ms)
        for item in proposal["items"]:
            tally.suggested[str((item.get("analysis") or {}).get("suggested_op"))] += 1
    return proposal, dict(done["memory_ids"])


async def _until_hybrid(client: TimedClient, query: str, scope: str) -> float:
    """Poll search_memory until it answers in hybrid mode; seconds waited. BenchError
    after SEMANTIC_WAIT_SECONDS (the model failed or never loaded)."""
    start = time.perf_counter()
    last: dict[str, Any] = {}
    with anyio.move_on_after(SEMANTIC_WAIT_SECONDS):
        while True:
            last, _ = await client.call("search_memory", {"query": query, "scope": scope, "k": 1})
            if last["mode"] == "hybrid":
                return time.perf_counter() - start
            await anyio.sleep(_POLL_SECONDS)
    raise BenchError(
        f"semantic search was not live after {SEMANTIC_WAIT_SECONDS:.0f} s "
        f"(search_memory said: {last.get('note', 'nothing')})"
    )


async def _wait_for_model(client: TimedClient) -> float:
    """Wait until the embedding model is loaded, so that commits embed synchronously: a
    probe memory in its own scope is committed, polled until search is hybrid, then
    deprecated (deprecated memories are never searched)."""
    probe = {"content": "Readiness probe of the LoCoMo benchmark.", "kind": "other",
             "scope": _PROBE_SCOPE}
    _, ids = await _commit(client, [probe], None, None)
    waited = await _until_hybrid(client, "readiness probe", _PROBE_SCOPE)
    await _commit(client, [{"op": "deprecate", "target_id": ids["0"]}], None, None)
    return waited


async def _ingest(client: TimedClient, conversations: Sequence[Conversation],
                  tally: ModeTally) -> None:
    start = time.perf_counter()
    for conv in conversations:
        run_id = f"ingest-{conv.sample_id}"
        await client.call("start_run", {
            "objective": f"Remember conversation {conv.sample_id}, one memory per turn.",
            "run_id": run_id,
        })
        for batch in _batches(conv.turns, BATCH_ITEMS):
            items = [
                {"content": t.content, "kind": "fact", "scope": conv.scope,
                 "source_refs": [t.dia_id]}
                for t in batch
            ]
            _, ids = await _commit(client, items, run_id, tally)
            for index, turn in enumerate(batch):
                memory_id = ids[str(index)]
                tally.memory_of[memory_id] = (conv.sample_id, turn.content)
                tally.by_turn[(conv.sample_id, turn.dia_id)] = memory_id
        tally.memories += len(conv.turns)
        _progress(f"  ingested {conv.sample_id}: {len(conv.turns)} turns")
    tally.ingest_seconds = time.perf_counter() - start


def _turn_of(hit: dict[str, Any], conv: Conversation) -> str | None:
    refs = hit.get("source_refs") or []
    return str(refs[0]) if hit.get("scope") == conv.scope and refs else None


async def _search(client: TimedClient, conversations: Sequence[Conversation], k: int,
                  tally: ModeTally) -> None:
    warmups = [(c, q) for c in conversations for q in c.questions][:_WARMUP_SEARCHES]
    for conv, question in warmups:  # untimed: first-call costs (caches, BLAS threads)
        await client.call("search_memory", {"query": question.text, "scope": conv.scope, "k": k})
    for conv in conversations:
        for question in conv.questions:
            found, ms = await client.call(
                "search_memory", {"query": question.text, "scope": conv.scope, "k": k}
            )
            tally.search_ms.append(ms)
            tally.search_modes[str(found["mode"])] += 1
            ranked = [_turn_of(hit, conv) for hit in found["hits"]]
            tally.foreign_hits += sum(1 for d in ranked if d is None)
            tally.scored.append(score(ranked, question))


async def _rehydrate(client: TimedClient, conversations: Sequence[Conversation],
                     mode: Mode, tally: ModeTally) -> None:
    for conv in conversations:
        for index, question in enumerate(conv.questions):
            run_id = f"q-{mode.name}-{conv.sample_id}-{index:04d}"
            await client.call("start_run", {"objective": question.text, "run_id": run_id})
            ctx, ms = await client.call("rehydrate", {
                "run_id": run_id, "budget_tokens": REHYDRATE_BUDGET, "query": question.text,
            })
            text = str(ctx["context"])
            shown = [str(m) for m in ctx["memories_included"]]
            tally.rehydrate_ms.append(ms)
            tally.rehydrate_tokens.append(int(ctx["tokens"]))
            tally.rehydrate_over_budget += int(ctx["tokens"]) > REHYDRATE_BUDGET
            tally.memories_shown.append(len(shown))
            visible: set[str] = set()
            for memory_id in shown:
                sample_id, content = tally.memory_of.get(memory_id, ("", ""))
                if sample_id != conv.sample_id:
                    tally.shown_other_conversation += 1
                if content and content in text:
                    visible.add(memory_id)
                else:
                    tally.shown_text_missing += 1
            found = sum(
                1 for e in question.evidence if tally.by_turn[(conv.sample_id, e)] in visible
            )
            tally.rehydrate_recall.append(found / len(question.evidence))


async def _vectors_stored(
    data_dir: Path, store_url: str, tenant: Tenant, ids: Sequence[str]
) -> dict[str, Any]:
    """After the server exits: which model's vectors the store holds, and for how many of
    the benchmark's memories."""
    backend = "sqlite" if store_url.startswith("sqlite") else "auto"
    settings = Settings(data_dir=data_dir, store_url=store_url, tenant=tenant,
                        vectors=VectorSettings.model_validate({"backend": backend}))
    store = make_store(settings)
    await store.open()
    index = make_vector_index(settings, store)
    await index.open()
    try:
        space = await index.space()
        if space is None:
            return {"model_id": None, "dimension": None, "memories_with_vector": 0}
        have = await index.indexed(tenant, space[0], [MemoryId(i) for i in ids])
        return {"model_id": space[0], "dimension": space[1], "memories_with_vector": len(have)}
    finally:
        await index.close()
        await store.close()


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def _run_mode(
    mode: Mode, conversations: Sequence[Conversation], k: int, given_url: str | None
) -> dict[str, Any]:
    tally = ModeTally()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mcp-checkpoint-locomo-{mode.name}-") as tmp:
        data_dir = Path(tmp)
        store_url = given_url or f"sqlite:///{data_dir / 'bench.db'}"
        # A given store may hold earlier benchmarks' memories: each mode writes its own tenant.
        tenant = Tenant(f"{TENANT}-{mode.name}-{uuid.uuid4().hex[:8]}") if given_url else TENANT
        env = {
            "MCP_CHECKPOINT_DATA_DIR": str(data_dir),
            "MCP_CHECKPOINT_STORE_URL": store_url,
            "MCP_CHECKPOINT_TENANT": tenant,
            "MCP_CHECKPOINT_LOG_LEVEL": "WARNING",
            "MCP_CHECKPOINT_EMBEDDINGS__PROVIDER": mode.provider,
        }
        errlog_path = data_dir / "server-stderr.log"
        try:
            with errlog_path.open("w", encoding="utf-8") as errlog:
                async with spawn_server(env, errlog) as client:
                    _progress(f"{mode.name}: server up (embeddings.provider={mode.provider})")
                    if mode.name == "hybrid":
                        tally.model_wait_seconds = await _wait_for_model(client)
                        _progress(f"{mode.name}: model loaded after "
                                  f"{tally.model_wait_seconds:.1f} s")
                    await _ingest(client, conversations, tally)
                    first = next(c for c in conversations if c.questions)
                    if mode.name == "hybrid":
                        await _until_hybrid(client, first.questions[0].text, first.scope)
                    _progress(f"{mode.name}: {len(tally.memory_of):,} memories; searching")
                    await _search(client, conversations, k, tally)
                    _progress(f"{mode.name}: rehydrating ({REHYDRATE_BUDGET} tokens)")
                    await _rehydrate(client, conversations, mode, tally)
        except Exception as exc:
            # Our own BenchError (a tool error) passes as it is; anything else (the server
            # died, the transport broke) is reported with the end of the server's stderr.
            leaves = _leaves(exc)
            own = [e for e in leaves if isinstance(e, BenchError)]
            if own:
                raise own[0] from exc
            tail = errlog_path.read_text(encoding="utf-8")[-2000:] if errlog_path.exists() else ""
            what = "; ".join(repr(e) for e in leaves)
            raise BenchError(
                f"{mode.name}: the server failed ({what}); its stderr ends with:\n{tail}"
            ) from exc
        vectors = await _vectors_stored(data_dir, store_url, tenant, list(tally.memory_of))
    return _mode_report(mode, tally, vectors, env, time.perf_counter() - started)


def _mode_report(mode: Mode, tally: ModeTally, vectors: dict[str, Any], env: dict[str, str],
                 seconds: float) -> dict[str, Any]:
    shown = sum(tally.memories_shown)
    return {
        "provider": mode.provider,
        "seconds": round(seconds, 1),
        "server_env": {
            key: ("<tmp>" if key in ("MCP_CHECKPOINT_DATA_DIR", "MCP_CHECKPOINT_STORE_URL")
                  else value)
            for key, value in env.items()
        },
        "memories": tally.memories,
        "ingest": {
            "memories": tally.memories,
            "batches": len(tally.propose_ms),
            "batch_items": BATCH_ITEMS,
            "seconds": round(tally.ingest_seconds, 2),
            "memories_per_second": round(tally.memories / tally.ingest_seconds, 1)
            if tally.ingest_seconds else None,
            "propose_ms": _latency(tally.propose_ms),
            "commit_ms": _latency(tally.commit_ms),
            "suggested_ops": dict(tally.suggested),
            "model_wait_seconds": None if tally.model_wait_seconds is None
            else round(tally.model_wait_seconds, 1),
            "how": "start_run per conversation, then propose_memory + commit_memory per batch "
            "(every item accepted); in hybrid mode after the model loaded, so commits embed",
        },
        "search": {
            "latency_ms": _latency(tally.search_ms),
            "modes": dict(tally.search_modes),
            "hits_outside_conversation": tally.foreign_hits,
        },
        "retrieval": {
            "overall": _figures(tally.scored),
            "by_category": {
                str(c): _figures([s for s in tally.scored if s.category == c]) for c in CATEGORIES
            },
        },
        "rehydrate": {
            "budget_tokens": REHYDRATE_BUDGET,
            "evidence_recall": round(sum(tally.rehydrate_recall) / len(tally.rehydrate_recall), 4)
            if tally.rehydrate_recall else None,
            "contexts": len(tally.rehydrate_recall),
            "memories_shown_mean": round(shown / len(tally.memories_shown), 2)
            if tally.memories_shown else None,
            "memories_from_other_conversations": tally.shown_other_conversation,
            "memories_shown": shown,
            "listed_but_text_missing": tally.shown_text_missing,
            "tokens_max": max(tally.rehydrate_tokens, default=None),
            "over_budget": tally.rehydrate_over_budget,
            "latency_ms": _latency(tally.rehydrate_ms),
            "how": "start_run(objective=question) then rehydrate(budget_tokens, query=question);"
            " rehydrate searches every scope, so other conversations' memories compete",
        },
        "vectors": vectors,
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    conversations = load_locomo(args.data)
    if args.quick:
        conversations = _quick(conversations)
    if not any(c.questions for c in conversations):
        raise BenchError(f"{args.data}: no question of categories 1-4 names an existing turn")
    modes: dict[str, Any] = {}
    for mode in args.modes:
        modes[mode.name] = await _run_mode(mode, conversations, args.k, args.store_url)
    return _report(args, conversations, modes, time.perf_counter() - started)


# -- the report ----------------------------------------------------------------------------


def _target(name: str, goal: str, value: float | None, ok: bool) -> dict[str, Any]:
    return {"name": name, "target": goal, "value": value, "pass": bool(value is not None and ok)}


def _report(args: argparse.Namespace, conversations: Sequence[Conversation],
            modes: dict[str, Any], seconds: float) -> dict[str, Any]:
    questions = [q for c in conversations for q in c.questions]
    turns = sum(len(c.turns) for c in conversations)
    targets = []
    for name, goal in (("hybrid", TARGET_HYBRID_RECALL5), ("lexical", TARGET_LEXICAL_RECALL5)):
        if name not in modes:
            continue
        value = modes[name]["retrieval"]["overall"]["turn_recall@5"]
        targets.append(_target(f"{name} turn recall@5", f">= {goal:.2f}", value,
                               value is not None and value >= goal))
    for name, mode in modes.items():
        p50 = mode["search"]["latency_ms"]["p50"]
        targets.append(_target(
            f"{name} search p50 ms ({mode['memories']:,} memories)",
            f"<= {TARGET_SEARCH_P50_MS:.0f}", p50,
            p50 is not None and p50 <= TARGET_SEARCH_P50_MS,
        ))
    return {
        "benchmark": "locomo",
        "version": __version__,
        "profile": "quick" if args.quick else "full",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "data": str(args.data),
        "seconds": round(seconds, 1),
        "k": args.k,
        "conversations": [c.sample_id for c in conversations],
        "turns": turns,
        "questions": len(questions),
        "questions_by_category": {
            str(c): sum(1 for q in questions if q.category == c) for c in CATEGORIES
        },
        "memory": {
            "content": "{speaker}: {text}",
            "scope": "conv:{sample_id}",
            "kind": "fact",
            "source_refs": "[dia_id]",
        },
        "server": {
            "command": f"{Path(sys.executable).name} -m mcp_checkpoint serve",
            "transport": "stdio",
            "store": f"{mask_url(args.store_url)}, a new tenant per mode" if args.store_url
            else "a fresh SQLite file per mode (default settings)",
        },
        "modes": modes,
        "targets": targets,
        "references": [
            {"what": what, "turn_recall@5": r5, "turn_recall@10": r10 or None,
             "session_recall@5": s5 or None}
            for what, r5, r10, s5 in REFERENCES
        ],
    }


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    lines: list[str] = []
    add = lines.append
    names = list(report["modes"])
    modes = [report["modes"][n] for n in names]
    add(
        f"mcp-checkpoint {report['version']} bench locomo ({report['profile']}) — "
        f"{len(report['conversations'])} conversations, {report['turns']:,} turns, "
        f"{report['questions']} questions (categories 1-4), {report['seconds']} s"
    )
    add(f"data: {report['data']}")
    add(
        f"memory per turn: \"{report['memory']['content']}\", scope "
        f"{report['memory']['scope']}, source_refs {report['memory']['source_refs']}; "
        f"search_memory k={report['k']}"
    )
    add(f"server: {report['server']['command']} over stdio, {report['server']['store']}")
    add("")

    def row(label: str, cells: Sequence[str]) -> None:
        add(f"  {label:<42}" + "".join(f"{c:>22}" for c in cells))

    row("", names)
    row("embeddings.provider", [m["provider"] for m in modes])
    for key in ("turn_recall@5", "turn_recall@10", "session_recall@5", "ndcg@10"):
        row(key, [_f(m["retrieval"]["overall"][key]) for m in modes])
    for c, n in report["questions_by_category"].items():
        row(f"  category {c} (n={n}) turn recall@5 / @10",
            [f"{_f(m['retrieval']['by_category'][c]['turn_recall@5'], 2)}/"
             f"{_f(m['retrieval']['by_category'][c]['turn_recall@10'], 2)}" for m in modes])
    row("search modes answered", [",".join(f"{k}:{v}" for k, v in m["search"]["modes"].items())
                                  for m in modes])
    row("search ms p50 / p95 (client-side)",
        [f"{_f(m['search']['latency_ms']['p50'], 1)}/{_f(m['search']['latency_ms']['p95'], 1)}"
         for m in modes])
    row("ingest memories/s (propose + commit)",
        [_f(m["ingest"]["memories_per_second"], 1) for m in modes])
    row("  propose / commit ms p50 per batch",
        [f"{_f(m['ingest']['propose_ms']['p50'], 0)}/{_f(m['ingest']['commit_ms']['p50'], 0)}"
         for m in modes])
    row("  suggested skip / supersede (all added)",
        [f"{m['ingest']['suggested_ops'].get('skip', 0)}/"
         f"{m['ingest']['suggested_ops'].get('supersede', 0)}" for m in modes])
    row("  model load wait s (before ingest)",
        [_f(m["ingest"]["model_wait_seconds"], 1) for m in modes])
    row("memories with a vector afterwards",
        [f"{m['vectors']['memories_with_vector']}/{m['memories']}" for m in modes])
    budget = modes[0]["rehydrate"]["budget_tokens"]
    row(f"rehydrate evidence recall ({budget:,} tokens)",
        [_f(m["rehydrate"]["evidence_recall"]) for m in modes])
    row("  memories shown per context (mean)",
        [_f(m["rehydrate"]["memories_shown_mean"], 2) for m in modes])
    row("  of them from other conversations",
        [f"{m['rehydrate']['memories_from_other_conversations']}/"
         f"{m['rehydrate']['memories_shown']}" for m in modes])
    row("  contexts over budget / max tokens",
        [f"{m['rehydrate']['over_budget']}/{m['rehydrate']['tokens_max']}" for m in modes])
    row("  rehydrate ms p50 / p95",
        [f"{_f(m['rehydrate']['latency_ms']['p50'], 1)}/"
         f"{_f(m['rehydrate']['latency_ms']['p95'], 1)}" for m in modes])
    model = next((m["vectors"]["model_id"] for m in modes if m["vectors"]["model_id"]), None)
    add(f"  hybrid vectors: {model or 'none'}; rehydrate searches every scope (no scope "
        "argument), so other conversations compete for its memory slots")
    add("")
    add("targets")
    for t in report["targets"]:
        add(f"  {t['name']:<42}{t['target']:>10}{_f(t['value']):>10}  "
            f"{'PASS' if t['pass'] else 'FAIL'}")
    add("")
    add("references (turn recall@5 / @10 / session recall@5; not this run)")
    for r in report["references"]:
        add(f"  {r['what']:<58}{r['turn_recall@5']:>7}{r['turn_recall@10'] or '':>7}"
            f"{r['session_recall@5'] or '':>7}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark: print the table (and write JSON with ``--json``). Exit code 0
    whatever the targets say; 1 when the benchmark itself could not run."""
    try:
        report = anyio.run(_bench, args)
    except (BenchError, CheckpointError) as exc:
        sys.stderr.write(f"mcp-checkpoint bench locomo: {exc}\n")
        return 1
    emit(render(report), report, args.json)
    return 0
