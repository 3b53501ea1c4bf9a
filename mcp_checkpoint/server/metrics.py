"""Prometheus metrics in the text exposition format, written by hand.

Why not ``prometheus-client``: the server needs a handful of counters and histograms in
one process (each replica is scraped on its own), which is ~100 lines here and one less
dependency to install, audit and keep compatible. With ``serve --workers N`` the workers
share one port, so a scrape reaches one of them at random: each worker saves its figures
to the data directory every second and ``/metrics`` answers the sum (``WorkerMetrics``).
Nothing here carries tenant data: labels are tool names, error codes, store operations and
HTTP status classes only.

Exposed series:

- ``mcp_checkpoint_tool_calls_total{tool,code}``: tool calls by outcome (``ok`` or the
  error's stable code: ``not_found``, ``forbidden``, ``invalid_argument``, ...)
- ``mcp_checkpoint_tool_duration_seconds{tool}``: histogram of tool call latency
- ``mcp_checkpoint_store_duration_seconds{op}``: histogram of store call latency
- ``mcp_checkpoint_store_errors_total{op}``: store calls that raised
- ``mcp_checkpoint_http_responses_total{endpoint,status}``: HTTP answers (401s, 403s...)
- ``mcp_checkpoint_up``: 1 while the process serves
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mcp.server import MCPServer
    from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

    from mcp_checkpoint.core.ports import Store

__all__ = ["Metrics", "instrument_store", "metrics_middleware"]

CODES = frozenset({
    "not_found", "invalid_argument", "conflict", "payload_too_large", "backend_unavailable",
    "forbidden", "unauthorized", "internal", "config_error",
})
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_Labels = tuple[str, ...]


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.n += 1


def _label_text(names: tuple[str, ...], values: _Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters and histograms of one server process (updated on the event loop)."""

    def __init__(self) -> None:
        self.tool_calls: dict[_Labels, int] = {}
        self.tool_seconds: dict[_Labels, _Histogram] = {}
        self.store_seconds: dict[_Labels, _Histogram] = {}
        self.store_errors: dict[_Labels, int] = {}
        self.http_responses: dict[_Labels, int] = {}

    def tool_call(self, tool: str, code: str, seconds: float) -> None:
        """Count one tool call and its latency."""
        key = (tool, code)
        self.tool_calls[key] = self.tool_calls.get(key, 0) + 1
        self.tool_seconds.setdefault((tool,), _Histogram()).observe(seconds)

    def store_call(self, op: str, seconds: float, *, failed: bool) -> None:
        """Count one store call and its latency."""
        self.store_seconds.setdefault((op,), _Histogram()).observe(seconds)
        if failed:
            self.store_errors[(op,)] = self.store_errors.get((op,), 0) + 1

    def http_response(self, endpoint: str, status: int) -> None:
        """Count one HTTP answer."""
        key = (endpoint, str(status))
        self.http_responses[key] = self.http_responses.get(key, 0) + 1

    def snapshot(self) -> dict[str, list[Any]]:
        """Every figure as JSON-ready data (what :meth:`add` takes)."""
        out: dict[str, list[Any]] = {}
        for name in _COUNTERS:
            out[name] = [[list(k), v] for k, v in getattr(self, name).items()]
        for name in _HISTOGRAMS:
            out[name] = [[list(k), h.counts, h.total, h.n] for k, h in getattr(self, name).items()]
        return out

    def add(self, snapshot: dict[str, list[Any]]) -> None:
        """Add another process's :meth:`snapshot` to these figures."""
        for name in _COUNTERS:
            data: dict[_Labels, int] = getattr(self, name)
            for key, value in snapshot.get(name, []):
                data[tuple(key)] = data.get(tuple(key), 0) + int(value)
        for name in _HISTOGRAMS:
            hists: dict[_Labels, _Histogram] = getattr(self, name)
            for key, counts, total, n in snapshot.get(name, []):
                h = hists.setdefault(tuple(key), _Histogram())
                if len(counts) == len(h.counts):  # the same buckets (one version wrote it)
                    h.counts = [a + int(b) for a, b in zip(h.counts, counts, strict=True)]
                    h.total += float(total)
                    h.n += int(n)

    def render(self) -> str:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = [
            "# HELP mcp_checkpoint_up 1 while the server process serves.",
            "# TYPE mcp_checkpoint_up gauge",
            "mcp_checkpoint_up 1",
        ]
        self._counter(out, "mcp_checkpoint_tool_calls_total", "Tool calls by outcome code.",
                      ("tool", "code"), self.tool_calls)
        self._histogram(out, "mcp_checkpoint_tool_duration_seconds", "Tool call latency.",
                        ("tool",), self.tool_seconds)
        self._histogram(out, "mcp_checkpoint_store_duration_seconds", "Store call latency.",
                        ("op",), self.store_seconds)
        self._counter(out, "mcp_checkpoint_store_errors_total", "Store calls that raised.",
                      ("op",), self.store_errors)
        self._counter(out, "mcp_checkpoint_http_responses_total",
                      "HTTP responses by endpoint and status.", ("endpoint", "status"),
                      self.http_responses)
        return "\n".join(out) + "\n"

    @staticmethod
    def _counter(
        out: list[str], name: str, help_: str, labels: tuple[str, ...], data: dict[_Labels, int]
    ) -> None:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
        out += [f"{name}{_label_text(labels, k)} {v}" for k, v in sorted(data.items())]

    @staticmethod
    def _histogram(
        out: list[str], name: str, help_: str, labels: tuple[str, ...],
        data: dict[_Labels, _Histogram],
    ) -> None:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for key, h in sorted(data.items()):
            running = 0
            for bound, count in zip((*BUCKETS, float("inf")), h.counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                bucket = 'le="' + le + '"'
                out.append(f"{name}_bucket{_label_text(labels, key, bucket)} {running}")
            out.append(f"{name}_sum{_label_text(labels, key)} {h.total:.6f}")
            out.append(f"{name}_count{_label_text(labels, key)} {h.n}")


_COUNTERS = ("tool_calls", "store_errors", "http_responses")
_HISTOGRAMS = ("tool_seconds", "store_seconds")


class WorkerMetrics:
    """One worker's :class:`Metrics` under ``serve --workers N``, shared through files.

    Worker ``i`` saves its figures to ``directory/worker-i.json`` (:meth:`save`, every
    second while it serves, and when it stops) and :meth:`render` answers the sum of its
    own live figures and the other workers' files, so a scrape sees every worker, the
    others as of their last save. A replacement for a worker that died starts from the
    file it left, so the sums never go down while the server runs; the server clears the
    directory when it starts.
    """

    SAVE_EVERY_SECONDS = 1.0

    def __init__(self, metrics: Metrics, directory: Path, index: int) -> None:
        """Share ``metrics`` as worker ``index``; take over what a predecessor saved."""
        self.metrics = metrics
        self._directory = directory
        self._index = index
        self._path = directory / f"worker-{index}.json"
        previous = self._read(self._path)
        if previous is not None:
            metrics.add(previous)

    @staticmethod
    def _read(path: Path) -> dict[str, list[Any]] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # not there (yet), or being replaced: the next scrape reads it
        return data if isinstance(data, dict) else None

    def save(self) -> None:
        """Write this worker's figures now (see :meth:`write`)."""
        self.write(self.metrics.snapshot())

    def write(self, snapshot: dict[str, list[Any]]) -> None:
        """Write a :meth:`Metrics.snapshot` as this worker's file (atomically: readers
        never see half a file). Safe on a worker thread: the snapshot is taken on the
        event loop, which alone updates the figures."""
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=self._directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(snapshot, out)
            os.replace(tmp, self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def render(self) -> str:
        """Every worker's figures summed, in the Prometheus text format."""
        total = Metrics()
        total.add(self.metrics.snapshot())
        for path in sorted(self._directory.glob("worker-*.json")):
            if path != self._path and (other := self._read(path)) is not None:
                total.add(other)
        return total.render()

    @staticmethod
    def clear(directory: Path) -> None:
        """Forget the figures of an earlier server (called before its workers start)."""
        for path in directory.glob("worker-*.json"):
            path.unlink(missing_ok=True)


class _InstrumentedStore:
    """A store whose coroutine methods report their latency to ``Metrics``."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attr):
            return attr
        metrics = self._metrics
        fn = cast(Callable[..., Coroutine[Any, Any, Any]], attr)

        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            failed = True
            try:
                result = await fn(*args, **kwargs)
                failed = False
                return result
            finally:
                metrics.store_call(name, time.perf_counter() - start, failed=failed)

        setattr(self, name, timed)  # wrap each method once
        return timed


def instrument_store(store: Store, metrics: Metrics) -> Store:
    """``store`` with every async method timed into ``metrics``."""
    return cast("Store", _InstrumentedStore(store, metrics))


def metrics_middleware(metrics: Metrics, server: MCPServer[Any]) -> ServerMiddleware[Any]:
    """Middleware counting ``tools/call`` by tool and outcome code, with its latency (a
    name the server does not know is counted as ``unknown``: clients cannot mint labels)."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call" or not isinstance(ctx.params, dict):
            return await call_next(ctx)
        name = ctx.params.get("name")
        known = server._tool_manager.get_tool(name) if isinstance(name, str) else None
        tool = name if known is not None and isinstance(name, str) else "unknown"
        start = time.perf_counter()
        code = "internal"
        try:
            result = await call_next(ctx)
            code = _code_of(result)
            return result
        except Exception as exc:
            code = _known(str(getattr(exc, "message", "") or exc))
            raise
        finally:
            metrics.tool_call(tool, code, time.perf_counter() - start)

    return middleware


def _code_of(result: Any) -> str:
    if not isinstance(result, dict) or not result.get("isError"):
        return "ok"
    for block in result.get("content") or []:
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, str):
            return _known(text)
    return "error"


def _known(message: str) -> str:
    """The stable code prefix of an error message, or ``error`` (bounded label values)."""
    code = message.split(":", 1)[0]
    return code if code in CODES else "error"

