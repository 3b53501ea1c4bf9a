"""``bench._server``'s call timing (``bench loop --server-times``): requests matched to
their answers by id, filed by tool, the minimal steps apart."""

from __future__ import annotations

import json

import pytest

from bench._server import MINIMAL_TOOL, _call_times


def _call(id_: int, name: str, arguments: dict[str, object]) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "tools/call",
                       "params": {"name": name, "arguments": arguments}}) + "\n"


def _answer(id_: int) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "result": {}}) + "\n"


def test_call_times_match_answers_to_requests_by_id_and_file_minimal_steps_apart() -> None:
    received = [
        (1.0, json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})),
        (2.0, _call(1, "record_step", {"run_id": "r", "tool": "bash"})),
        (3.0, _call(2, "noop", {"payload": {"tool": MINIMAL_TOOL}})),
        (4.0, _call(3, "record_step", {"run_id": "r", "tool": MINIMAL_TOOL})),
        (5.0, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})),
        (6.0, _call(4, "noop", {"payload": "text"})),
    ]
    sent = [(1.5, _answer(0)), (3.5, _answer(2)), (2.25, _answer(1)), (4.75, _answer(3)),
            (6.5, json.dumps({"jsonrpc": "2.0", "method": "notifications/progress"})),
            (7.0, _answer(4))]

    times = _call_times(received, sent)

    assert times == {
        "record_step": [pytest.approx(0.25)],
        "noop (minimal)": [pytest.approx(0.5)],
        "record_step (minimal)": [pytest.approx(0.75)],
        "noop": [pytest.approx(1.0)],
    }
