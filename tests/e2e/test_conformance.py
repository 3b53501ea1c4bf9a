"""The official MCP conformance suite (``@modelcontextprotocol/conformance``, pinned in
tests/node/package.json), server scenarios, against ``serve --transport http``.

Every check must pass except those ``tests/node/conformance-expected.json`` lists as not
applicable (scenarios that need the reference server's ``test_*`` tools, prompts and
resources), and those must still come out exactly as listed: a new failure, a new warning
or a new scenario fails this test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest

from tests.e2e.http_helpers import HttpServer
from tests.e2e.node_helpers import MODULES, NODE_DIR, node_clients

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.slow]

EXPECTED = NODE_DIR / "conformance-expected.json"
SUITE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
PASSING = {"SUCCESS", "INFO"}
_RUN_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


def outcomes(out_dir: Path) -> dict[str, dict[str, set[str]]]:
    """scenario -> check id -> the statuses it came out with."""
    found: dict[str, dict[str, set[str]]] = {}
    for run in sorted(out_dir.iterdir()):
        match = _RUN_DIR.match(run.name)
        assert match, f"unexpected result folder {run.name}"
        checks = found.setdefault(match["scenario"], {})
        for check in json.loads((run / "checks.json").read_text()):
            checks.setdefault(check["id"], set()).add(check["status"])
    return found


def compare(found: dict[str, dict[str, set[str]]], expected: dict[str, object]) -> list[str]:
    """Every difference between the suite's outcome and the expected list, as text."""
    applicable = set(expected["applicable"])  # type: ignore[call-overload]
    not_applicable: dict[str, dict[str, object]] = expected["not_applicable"]  # type: ignore[assignment]
    problems: list[str] = []
    unnamed = set(found) - applicable - set(not_applicable)
    problems += [f"{s}: a scenario the expected list does not name" for s in sorted(unnamed)]
    problems += [f"{s}: expected to run, did not" for s in
                 sorted((applicable | set(not_applicable)) - set(found))]
    for scenario, checks in sorted(found.items()):
        allowed: dict[str, str] = not_applicable.get(scenario, {}).get("checks", {})  # type: ignore[attr-defined]
        for check, statuses in sorted(checks.items()):
            bad = statuses - PASSING
            if check in allowed:
                if bad != {allowed[check]}:
                    problems.append(f"{scenario}/{check}: expected {allowed[check]} (not "
                                    f"applicable), got {sorted(statuses)}")
            elif bad:
                problems.append(f"{scenario}/{check}: {sorted(bad)}")
        problems += [f"{scenario}/{check}: listed as not applicable but did not run"
                     for check in sorted(set(allowed) - set(checks))]
    return problems


async def test_conformance_suite_server_scenarios(tmp_path: Path) -> None:
    node = node_clients()
    expected = json.loads(EXPECTED.read_text())
    out_dir = tmp_path / "results"
    async with HttpServer(tmp_path / "data", "--no-auth") as server:
        with anyio.fail_after(600):
            done = await anyio.run_process(
                [str(node), str(SUITE), "server", "--url", server.url, "--suite", "all",
                 "-o", str(out_dir)],
                check=False,
            )
        log = server.log()
    summary = done.stdout.decode("utf-8", "replace")
    assert out_dir.exists(), summary + done.stderr.decode("utf-8", "replace")

    problems = compare(outcomes(out_dir), expected)

    assert problems == [], "\n".join(problems) + "\n" + summary[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_the_comparison_catches_a_new_failure_a_warning_and_a_stale_entry() -> None:
    expected = {
        "applicable": ["ping", "tools-list"],
        "not_applicable": {"prompts-get-simple": {"reason": "r", "checks": {"p": "FAILURE"}}},
    }
    clean = {"ping": {"ping": {"SUCCESS"}}, "tools-list": {"tools-list": {"SUCCESS", "INFO"}},
             "prompts-get-simple": {"p": {"FAILURE"}}}
    assert compare(clean, expected) == []

    broken = {"ping": {"ping": {"FAILURE"}}, "tools-list": {"tools-list": {"WARNING"}},
              "prompts-get-simple": {"p": {"SUCCESS"}}, "new-one": {"x": {"SUCCESS"}}}
    assert compare(broken, expected) == [
        "new-one: a scenario the expected list does not name",
        "ping/ping: ['FAILURE']",
        "prompts-get-simple/p: expected FAILURE (not applicable), got ['SUCCESS']",
        "tools-list/tools-list: ['WARNING']",
    ]
