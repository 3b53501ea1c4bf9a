"""Metrics of ``serve --workers N``: each worker saves its figures, /metrics sums them."""

from __future__ import annotations

import json
from pathlib import Path

from mcp_checkpoint.server.metrics import Metrics, WorkerMetrics


def _busy(calls: int, *, failed_store_calls: int = 0) -> Metrics:
    metrics = Metrics()
    for _ in range(calls):
        metrics.tool_call("record_step", "ok", 0.003)
        metrics.store_call("append_step", 0.0004, failed=False)
        metrics.http_response("/mcp", 200)
    for _ in range(failed_store_calls):
        metrics.store_call("get_run", 2.0, failed=True)
    return metrics


def test_a_snapshot_added_to_empty_metrics_renders_the_same() -> None:
    metrics = _busy(3, failed_store_calls=1)
    copy = Metrics()
    copy.add(json.loads(json.dumps(metrics.snapshot())))  # through JSON, as the files go

    assert copy.render() == metrics.render()


def test_every_worker_answers_the_sum_of_all_workers(tmp_path: Path) -> None:
    first = WorkerMetrics(_busy(2), tmp_path, 0)
    second = WorkerMetrics(_busy(5, failed_store_calls=1), tmp_path, 1)
    first.save()
    second.save()
    first.metrics.tool_call("record_step", "ok", 0.003)  # live figures count unsaved

    body = first.render()
    assert 'mcp_checkpoint_tool_calls_total{tool="record_step",code="ok"} 8' in body
    assert 'mcp_checkpoint_tool_duration_seconds_count{tool="record_step"} 8' in body
    assert 'mcp_checkpoint_tool_duration_seconds_bucket{tool="record_step",le="0.005"} 8' in body
    assert 'mcp_checkpoint_store_errors_total{op="get_run"} 1' in body
    assert 'mcp_checkpoint_http_responses_total{endpoint="/mcp",status="200"} 7' in body
    # The other worker sees the first one as of its last save.
    assert 'mcp_checkpoint_tool_calls_total{tool="record_step",code="ok"} 7' in second.render()


def test_a_replacement_worker_starts_from_what_its_predecessor_saved(tmp_path: Path) -> None:
    WorkerMetrics(_busy(4), tmp_path, 1).save()

    replacement = WorkerMetrics(Metrics(), tmp_path, 1)
    replacement.metrics.tool_call("record_step", "ok", 0.003)

    assert 'tool_calls_total{tool="record_step",code="ok"} 5' in replacement.render()


def test_clear_forgets_an_earlier_server_and_unreadable_files_are_skipped(
    tmp_path: Path,
) -> None:
    WorkerMetrics(_busy(4), tmp_path, 0).save()
    WorkerMetrics(_busy(4), tmp_path, 3).save()
    WorkerMetrics.clear(tmp_path)
    (tmp_path / "worker-2.json").write_text("{half a fi", encoding="utf-8")

    fresh = WorkerMetrics(_busy(1), tmp_path, 0)

    assert 'tool_calls_total{tool="record_step",code="ok"} 1' in fresh.render()
