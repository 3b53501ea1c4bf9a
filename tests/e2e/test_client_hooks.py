"""``mcp-checkpoint hook gemini-cli`` and ``hook codex`` as those clients run them: one real
process per event, fed payloads built from each client's documented hook input schemas
(Gemini CLI's hooks reference; Codex's generated hook schemas), and read back in each
client's documented output shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import SERVER, run_cli, server_env
from tests.e2e.test_claude_code_hooks import drained, runs_json

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

PROJECT = "/home/dev/shop"


async def hook(client: str, payload: object, env: dict[str, str],
               *args: str) -> tuple[int, str]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [str(SERVER), "hook", client, *args], input=raw, env=env, check=False
        )
    return done.returncode, done.stdout.decode()


# -- Gemini CLI ----------------------------------------------------------------------------


def gemini(name: str, session: str = "g-1", n: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": f"/home/dev/.gemini/tmp/{session}.json",
        "cwd": PROJECT,
        "hook_event_name": name,
        "timestamp": f"2026-12-07T10:30:{n:02d}.000Z",
        **fields,
    }


def gemini_tool(n: int, *, error: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "llmContent": f"Successfully modified file: {PROJECT}/src/cart_{n}.py",
        "returnDisplay": f"cart_{n}.py +1 -1",
    }
    if error:
        response = {"llmContent": error, "returnDisplay": error, "error": error}
    return gemini("AfterTool", n=n, tool_name="replace",
                  tool_input={"file_path": f"{PROJECT}/src/cart_{n}.py",
                              "old_string": "return total",
                              "new_string": f"return apply_discount_{n}(total)"},
                  tool_response=response)


async def test_gemini_session_is_captured_compressed_and_given_back(tmp_path: Path) -> None:
    env = server_env(tmp_path, GEMINI_PROJECT_DIR=PROJECT)
    assert await hook("gemini-cli", gemini("SessionStart", source="startup"), env) == (0, "{}")
    assert await hook("gemini-cli", gemini("BeforeAgent", prompt="Add a discount to the cart"),
                      env) == (0, "{}")
    for n in range(3):
        assert await hook("gemini-cli", gemini_tool(n), env) == (0, "{}")
    await hook("gemini-cli", gemini_tool(3, error="Error: old_string not found in cart_3.py"),
               env)
    await hook("gemini-cli", gemini_tool(3, error="Error: old_string not found in cart_3.py"),
               env)  # the same event twice (a retried hook): recorded once
    await hook("gemini-cli", gemini("AfterAgent", prompt="Add a discount to the cart",
                                    prompt_response="Discount wired; cart_3.py still open.",
                                    stop_hook_active=False), env)
    await drained(tmp_path)

    [run] = await runs_json(env)
    assert (run["objective"], run["project"], run["step_count"]) == (
        "Add a discount to the cart", PROJECT, 6)  # prompt, 4 calls, the answer

    code, out = await hook("gemini-cli", gemini("PreCompress", trigger="auto"), env,
                           "--budget", "600")
    assert (code, out) == (0, "{}")
    [run] = await runs_json(env)
    assert run["checkpoint_count"] == 1

    # No start follows a compression: the next prompt gets the context back, once.
    code, out = await hook("gemini-cli", gemini("BeforeAgent", n=9, prompt="Now the tests"),
                           env, "--budget", "600")
    assert code == 0
    answer = json.loads(out)["hookSpecificOutput"]
    assert answer["hookEventName"] == "BeforeAgent"
    assert "apply_discount" in answer["additionalContext"]
    assert await hook("gemini-cli", gemini("BeforeAgent", n=10, prompt="And docs"), env,
                      "--budget", "600") == (0, "{}")

    code, out = await hook("gemini-cli", gemini("SessionStart", source="resume"), env,
                           "--budget", "600")
    started = json.loads(out)["hookSpecificOutput"]
    assert started["hookEventName"] == "SessionStart" and "cart_3.py" in started[
        "additionalContext"]
    await drained(tmp_path)
    _, shown, _ = await run_cli("runs", "show", run["run_id"], "--json", env=env)
    stats = json.loads(shown)["stats"]["steps_by_tool_and_status"]
    assert {(s["tool"], s["status"]): s["steps"] for s in stats if s["tool"] == "replace"} \
        == {("replace", "ok"): 3, ("replace", "error"): 1}


# -- Codex ---------------------------------------------------------------------------------


def codex(name: str, session: str = "c-1", **fields: Any) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": None,
        "cwd": PROJECT,
        "hook_event_name": name,
        "model": "gpt-5-codex",
        "turn_id": "019d036d-c7fa-72d2-b6fd-78878bfe34e4",
        **fields,
    }


def codex_tool(n: int) -> dict[str, Any]:
    return codex("PostToolUse", permission_mode="default", tool_name="Bash",
                 tool_input={"command": f"pytest -q tests/test_cart_{n}.py"},
                 tool_response=f"FAILED tests/test_cart_{n}.py::test_total_{n} - KeyError",
                 tool_use_id=f"call_{n:04d}")


async def test_codex_session_is_captured_compacted_and_given_back(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    assert await hook("codex", codex("SessionStart", source="startup"), env) == (0, "")
    assert await hook("codex", codex("UserPromptSubmit", permission_mode="default",
                                     prompt="Fix the cart totals"), env) == (0, "")
    for n in range(3):
        assert await hook("codex", codex_tool(n), env) == (0, "")
    await hook("codex", codex_tool(2), env)  # replayed: the call id keys it
    await hook("codex", codex("Stop", permission_mode="default", stop_hook_active=False,
                              last_assistant_message="Totals fixed except test_total_2."), env)
    await drained(tmp_path)
    [run] = await runs_json(env)
    assert (run["objective"], run["project"], run["step_count"]) == (
        "Fix the cart totals", PROJECT, 5)

    assert await hook("codex", codex("PreCompact", trigger="auto"), env) == (0, "")
    code, out = await hook("codex", codex("UserPromptSubmit", permission_mode="default",
                                          prompt="Go on"), env)

    assert code == 0
    answer = json.loads(out)["hookSpecificOutput"]
    assert answer["hookEventName"] == "UserPromptSubmit"
    assert "test_total_2" in answer["additionalContext"]


async def test_other_clients_fail_soft_on_bad_input(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    for client, quiet in (("gemini-cli", "{}"), ("codex", "")):  # Gemini CLI parses stdout
        assert await hook(client, b"{not json", env) == (0, quiet)
        assert await hook(client, gemini("Notification", message="x"), env) == (0, quiet)
    _, report, _ = await run_cli("doctor", "--json", env=env)
    log = json.loads(report)["hook_log"]
    assert any("gemini-cli" in line and "not JSON" in line for line in log)
    assert any("codex Notification" in line and "ignored" in line for line in log)


async def test_install_other_clients_writes_hooks_that_run(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    env = server_env(tmp_path / "data")
    for client, path, event_name, payload, quiet in (
        ("gemini-cli", ".gemini/settings.json", "AfterTool", gemini_tool(1), b"{}"),
        ("codex", ".codex/hooks.json", "PostToolUse", codex_tool(1), b""),
    ):
        code, out, err = await run_cli("install", client, "--project", str(project), env=env)
        assert code == 0, err
        assert f"+ hooks.{event_name}" in out
        written = json.loads((project / path).read_text())
        command = written["hooks"][event_name][0]["hooks"][0]["command"]
        with anyio.fail_after(60):
            done = await anyio.run_process(["sh", "-c", command],
                                           input=json.dumps(payload).encode(), env=env,
                                           check=False)
        assert done.returncode == 0 and done.stdout == quiet
        again = await run_cli("install", client, "--project", str(project), env=env)
        assert "unchanged" in again[1]
        gone = await run_cli("install", client, "--project", str(project), "--uninstall",
                             env=env)
        assert gone[0] == 0 and "- hooks." in gone[1]
    await drained(tmp_path / "data")
    [run] = await runs_json(env)
    assert run["step_count"] == 2
