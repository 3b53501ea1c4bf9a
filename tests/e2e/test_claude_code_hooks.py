"""``mcp-checkpoint hook claude-code`` as Claude Code runs it: one real process per event,
fed payloads shaped like the hooks reference's examples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import SERVER, run_cli, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

PROJECT = "/home/dev/shop"


def event(name: str, session: str = "sess-1", **fields: Any) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": f"/home/dev/.claude/projects/-home-dev-shop/{session}.jsonl",
        "cwd": PROJECT,
        "permission_mode": "default",
        "hook_event_name": name,
        **fields,
    }


def tool_use(n: int, session: str = "sess-1") -> dict[str, Any]:
    return event(
        "PostToolUse", session,
        tool_name="Edit",
        tool_input={"file_path": f"{PROJECT}/src/cart_{n}.py", "old_string": "a",
                    "new_string": f"def apply_discount_{n}(cart): ..."},
        tool_response={"filePath": f"{PROJECT}/src/cart_{n}.py", "structuredPatch": []},
        tool_use_id=f"toolu_{n:04d}",
    )


async def hook(payload: object, env: dict[str, str], *args: str) -> tuple[int, str, float]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    start = anyio.current_time()
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [str(SERVER), "hook", "claude-code", *args], input=raw, env=env, check=False
        )
    return done.returncode, done.stdout.decode(), anyio.current_time() - start


async def drained(data_dir: Path) -> None:
    """Wait until the detached drainers have applied the spool (another process: polled)."""
    with anyio.fail_after(60):
        while _busy(data_dir / "hooks"):  # noqa: ASYNC110 - the state is another process's
            await anyio.sleep(0.05)


def _busy(hooks: Path) -> bool:
    spool = hooks / "spool.jsonl"
    if (spool.exists() and spool.stat().st_size) or list(hooks.glob("draining-*.jsonl")):
        return True
    # a drainer that took the spool is done once it has let go of the drain lock
    return (hooks / "drain.wait").exists() and _locked(hooks / "drain.lock")


def _locked(path: Path) -> bool:
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def runs_json(env: dict[str, str]) -> list[dict[str, Any]]:
    code, out, err = await run_cli("runs", "list", "--json", env=env)
    assert code == 0, err
    return list(json.loads(out))


async def test_a_session_is_captured_and_resumed_within_budget(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    assert (await hook(event("SessionStart", source="startup", model="claude-opus-5"), env))[:2] \
        == (0, "")  # nothing to resume yet: nothing printed
    await hook(event("UserPromptSubmit", prompt="Add a 10% discount code to the cart",
                     prompt_id="p-1"), env)
    for n in range(3):
        assert (await hook(tool_use(n), env))[:2] == (0, "")
    await hook(event("PostToolUseFailure", tool_name="Bash",
                     tool_input={"command": "pytest -q tests/test_cart.py"},
                     tool_use_id="toolu_fail",
                     error="Exit code 1\nFAILED tests/test_cart.py::test_discount - KeyError: "
                           "'SAVE10'\nexport STRIPE=sk_live_abcdefghijklmnop0123",
                     is_interrupt=False), env)
    await drained(tmp_path)

    [run] = await runs_json(env)
    code, out, _ = await hook(event("SessionStart", source="resume"), env, "--budget", "400")

    assert (run["objective"], run["project"], run["step_count"]) == (
        "Add a 10% discount code to the cart", PROJECT, 5
    )
    assert code == 0
    context = json.loads(out)["hookSpecificOutput"]
    assert context["hookEventName"] == "SessionStart"
    text = context["additionalContext"]
    assert f"{PROJECT}/src/cart_2.py" in text and "test_discount" in text
    assert "sk_live_abcdefghijklmnop0123" not in text
    bpe_openai = pytest.importorskip("bpe_openai")  # the dev extra: installed by .ci/run
    assert len(bpe_openai.get_encoding("o200k_base").encode_ordinary(text)) <= 400


async def test_precompact_checkpoints_and_compact_start_prints_it(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(json.dumps({
        "type": "assistant", "uuid": "u-1",
        "message": {"role": "assistant", "content": [
            {"type": "text", "text": "Plan: next I will wire apply_discount into checkout()."}]},
    }) + "\n")
    await hook(event("UserPromptSubmit", prompt="Refactor checkout"), env)
    for n in range(4):
        await hook(tool_use(n), env)
    # Stop reports the same message the transcript holds: one step, not two.
    await hook(event("Stop", stop_hook_active=False,
                     last_assistant_message="Plan: next I will wire apply_discount into "
                     "checkout().\n"), env)

    code, out, _ = await hook({**event("PreCompact", trigger="auto", custom_instructions=None),
                               "transcript_path": str(transcript)}, env)
    assert (code, out) == (0, "")
    [run] = await runs_json(env)
    code, out, _ = await hook(event("SessionStart", source="compact"), env)

    assert run["checkpoint_count"] == 1 and run["step_count"] == 6  # 1 prompt, 4 edits, 1 plan
    text = json.loads(out)["hookSpecificOutput"]["additionalContext"]
    assert "Checkpoint 1" in text and "apply_discount" in text


async def test_parallel_tool_calls_lose_nothing(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    await hook(event("UserPromptSubmit", prompt="Edit many files"), env)
    await drained(tmp_path)

    async with anyio.create_task_group() as tg:
        for n in range(24):
            tg.start_soon(hook, tool_use(n), env)
    await drained(tmp_path)

    [run] = await runs_json(env)
    code, out, err = await run_cli("runs", "show", run["run_id"], "--json", env=env)
    assert run["step_count"] == 25, (code, out, err)


async def test_a_lingering_drainer_applies_later_events_and_holds_no_drain_lock(
    tmp_path: Path,
) -> None:
    env = server_env(tmp_path)
    hooks = tmp_path / "hooks"
    await hook(event("UserPromptSubmit", prompt="Edit in bursts"), env)
    for burst in range(3):
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(hook, tool_use(burst * 10 + n), env)
        await drained(tmp_path)
        # the drainer waits for more (drain.wait) without the lock SessionStart takes
        assert _locked(hooks / "drain.wait") and not _locked(hooks / "drain.lock")

    [run] = await runs_json(env)
    assert run["step_count"] == 13


@pytest.mark.parametrize(
    ("stdin", "logged"),
    [
        pytest.param(b"{not json", "not JSON", id="bad-json"),
        pytest.param(b"[]", "JSON list", id="not-an-object"),
        pytest.param(json.dumps(event("Notification", message="hi")).encode(), "ignored",
                     id="unknown-event"),
    ],
)
async def test_bad_input_exits_zero_silently_and_doctor_shows_it(
    tmp_path: Path, stdin: bytes, logged: str
) -> None:
    env = server_env(tmp_path)

    code, out, _ = await hook(stdin, env)
    _, report, _ = await run_cli("doctor", "--json", env=env)

    assert (code, out) == (0, "")
    assert any(logged in line for line in json.loads(report)["hook_log"])


async def test_an_unusable_store_never_breaks_the_session(tmp_path: Path) -> None:
    env = server_env(tmp_path, MCP_CHECKPOINT_STORE_URL="postgresql://nobody@127.0.0.1:9/none",
                     MCP_CHECKPOINT_POSTGRES__CONNECT_TIMEOUT_S="0.5",
                     MCP_CHECKPOINT_HOOKS__DEADLINE_SECONDS="3")

    code, out, took = await hook(event("SessionStart", source="startup"), env)

    assert (code, out) == (0, "")
    assert took < 10
    log = (tmp_path / "hooks" / "hooks.log").read_text()
    assert "SessionStart" in log


async def test_install_then_hooks_run_from_the_written_settings(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    env = server_env(tmp_path / "data")

    code, out, err = await run_cli("install", "claude-code", "--project", str(project), env=env)

    assert code == 0, err
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["PostToolUse"][0]["hooks"][0]["command"]
    with anyio.fail_after(60):
        done = await anyio.run_process(
            ["sh", "-c", command], input=json.dumps(tool_use(1)).encode(), env=env, check=False
        )
    assert done.returncode == 0 and done.stdout == b""
    assert "+ hooks.PostToolUse" in out
    again = await run_cli("install", "claude-code", "--project", str(project), env=env)
    assert again[1].count("unchanged") == 2


async def test_the_per_tool_call_hook_loads_no_pydantic_store_or_sdk(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    probe = (
        "import io, sys\n"
        "from mcp_checkpoint.cli import main\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(sys.argv[1].encode()))\n"
        "main(['hook', 'claude-code'])\n"
        "heavy = ('pydantic', 'anyio', 'mcp', 'sqlite3', "
        "'mcp_checkpoint.config', 'mcp_checkpoint.core.episodes')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [str(SERVER.with_name("python")), "-c", probe, json.dumps(tool_use(7))],
            env=env, check=False,
        )

    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "[]"
    await drained(tmp_path)
    [run] = await runs_json(env)
    assert run["step_count"] == 1
