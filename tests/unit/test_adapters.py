"""The Claude Code adapter: payloads (as the hooks reference documents them) to records,
records to core services, and the settings-file merge of ``install``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_checkpoint.adapters._spool import HookLog, Spool, data_dir_from_env
from mcp_checkpoint.adapters.claude_code import (
    Applier,
    HookInputError,
    cached_context,
    fit_json,
    parse,
    to_record,
)
from mcp_checkpoint.adapters.install import HOOK_EVENTS, install_claude_code
from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.errors import ConfigError
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import FakeClock, T, WordTokenizer


def payload(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": "abc123",
        "transcript_path": "/home/u/.claude/projects/p/abc123.jsonl",
        "cwd": "/home/u/proj",
        "permission_mode": "default",
        "hook_event_name": event,
        **fields,
    }


# -- parse / to_record -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param([1, 2], "a JSON list, not an object", id="list"),
        pytest.param({"session_id": "s"}, "no hook_event_name", id="no-event"),
        pytest.param({"hook_event_name": "Stop"}, "Stop: the hook input has no session_id",
                     id="no-session"),
    ],
)
def test_parse_rejects_what_is_not_a_hook_event(raw: object, message: str) -> None:
    with pytest.raises(HookInputError, match=message):
        parse(raw, environ={})


def test_parse_takes_the_project_from_claude_project_dir_else_cwd() -> None:
    event = parse(payload("Stop", cwd="/home/u/proj/sub"), environ={})
    rooted = parse(payload("Stop", cwd="/home/u/proj/sub"),
                   environ={"CLAUDE_PROJECT_DIR": "/home/u/proj/"})

    assert event.project == "/home/u/proj/sub"
    assert rooted.project == "/home/u/proj"


def test_post_tool_use_becomes_a_step_keyed_by_tool_use_id() -> None:
    event = parse(payload(
        "PostToolUse", tool_name="Write",
        tool_input={"file_path": "/home/u/proj/a.py", "content": "x = 1"},
        tool_response={"filePath": "/home/u/proj/a.py", "type": "create"},
        tool_use_id="toolu_01ABC", duration_ms=12,
    ), environ={})

    record = to_record(event)

    assert record is not None
    assert (record["kind"], record["tool"], record["status"], record["key"]) == (
        "step", "Write", "ok", "tool:toolu_01ABC"
    )
    assert record["input"]["file_path"] == "/home/u/proj/a.py"
    assert record["output"] == {"filePath": "/home/u/proj/a.py", "type": "create"}


def test_post_tool_use_failure_is_an_error_step_with_the_error_text() -> None:
    event = parse(payload(
        "PostToolUseFailure", tool_name="Bash", tool_input={"command": "npm test"},
        tool_use_id="toolu_02", error="Exit code 1\nError: Cannot find module 'express'",
        is_interrupt=False,
    ), environ={})

    record = to_record(event)

    assert record is not None
    assert record["status"] == "error"
    assert record["output"].startswith("Exit code 1")


def test_prompt_carries_its_text_as_the_objective_and_blank_prompts_are_skipped() -> None:
    record = to_record(parse(payload("UserPromptSubmit", prompt="Fix the login bug",
                                     prompt_id="p-1"), environ={}))
    blank = to_record(parse(payload("UserPromptSubmit", prompt="  "), environ={}))

    assert record is not None and blank is None
    assert (record["tool"], record["objective"], record["key"]) == (
        "user_prompt", "Fix the login bug", "prompt:p-1"
    )


def test_our_own_mcp_tools_are_not_recorded_twice() -> None:
    event = parse(payload("PostToolUse", tool_name="mcp__checkpoint__record_step",
                          tool_input={}, tool_response={}, tool_use_id="t"), environ={})

    assert to_record(event) is None


def test_stop_keeps_the_last_assistant_message_and_session_end_its_reason() -> None:
    stop = to_record(parse(payload("Stop", stop_hook_active=False,
                                   last_assistant_message="Done: tests pass."), environ={}))
    end = to_record(parse(payload("SessionEnd", reason="prompt_input_exit"), environ={}))

    assert stop is not None and end is not None
    assert stop["kind"] == "due" and stop["step"]["reasoning"] == "Done: tests pass."
    assert end == {**end, "kind": "end", "reason": "prompt_input_exit"}


def test_fit_json_keeps_head_and_tail_within_the_limit() -> None:
    log = "collected 3000 items\n" + "tests/test_mod.py::test_case PASSED\n" * 3000
    value = {"stdout": log + "FAILED tests/test_core.py::test_final_boss - AssertionError",
             "stderr": ""}

    fitted = fit_json(value, 4000)

    assert len(json.dumps(fitted, ensure_ascii=False).encode()) <= 4000
    assert fitted["stdout"].startswith("collected 3000 items")
    assert fitted["stdout"].endswith("test_final_boss - AssertionError")
    assert fit_json({"small": "x"}, 4000) == {"small": "x"}


def test_data_dir_from_env_agrees_with_settings(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.delenv("MCP_CHECKPOINT_DATA_DIR", raising=False)
    assert data_dir_from_env() == Settings().data_dir
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path))
    assert data_dir_from_env() == Settings().data_dir == tmp_path


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"HOME": "/home/u"}, id="home"),
        pytest.param({"HOME": "/home/u/", "XDG_DATA_HOME": ""}, id="blank-xdg"),
        pytest.param({"HOME": "/home/u", "XDG_DATA_HOME": "/data/xdg"}, id="xdg"),
        pytest.param({"HOME": "/home/u", "XDG_DATA_HOME": "relative/xdg"}, id="relative-xdg"),
        pytest.param({"HOME": "relative"}, id="relative-home"),
    ],
)
def test_data_dir_without_platformdirs_agrees_with_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    import platformdirs

    for name in ("MCP_CHECKPOINT_DATA_DIR", "XDG_DATA_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        expected: object = Path(platformdirs.user_data_dir("mcp-checkpoint", appauthor=False))
    except RuntimeError as exc:  # platformdirs refuses a relative HOME
        expected = type(exc)
    try:
        found: object = data_dir_from_env()
    except RuntimeError as exc:
        found = type(exc)

    assert found == expected


def test_a_hook_starts_no_drainer_while_one_waits(tmp_path: Path) -> None:
    from mcp_checkpoint.adapters._spool import FileLock

    spool = Spool(tmp_path)
    spool.append({"n": 1})
    assert not spool.drainer_waiting()
    waiter = FileLock(spool.drain_wait)
    assert waiter.acquire(blocking=False)
    try:
        assert spool.drainer_waiting()
        spool.spawn_drainer(["/nonexistent/drainer"])  # not started: no error
        assert not FileLock(spool.drain_wait).acquire(blocking=False)
    finally:
        waiter.release()
    assert not spool.drainer_waiting()


def test_spool_keeps_order_and_skips_torn_lines(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"n": 1})
    spool.append({"n": 2})
    with spool.file.open("a", encoding="utf-8") as fh:
        fh.write('{"n": 3, "torn')

    [taken] = spool.take()

    assert list(Spool.read(taken)) == [{"n": 1}, {"n": 2}, None]
    assert not spool.file.exists() and spool.pending()


def test_hook_log_keeps_the_last_lines(tmp_path: Path) -> None:
    log = HookLog(tmp_path)
    for i in range(7):
        log.write("PostToolUse", f"problem {i}\nsecond line")

    tail = log.tail(3)

    assert [line.split(" ", 2)[2] for line in tail] == [
        f"problem {i} second line" for i in (4, 5, 6)
    ]


# -- Applier on the reference store --------------------------------------------------------


def applier(tmp_path: Path, **hooks: Any) -> Applier:
    settings = Settings(data_dir=tmp_path, hooks=hooks, checkpoint={"trigger_steps": 3})
    tok = WordTokenizer()
    episodes = Episodes(ReferenceStore(), tok, settings, clock=FakeClock())
    return Applier(episodes, tok, settings, tmp_path)


def step_record(session: str, n: int, project: str = "/p") -> dict[str, Any]:
    return {"kind": "step", "session": session, "project": project, "key": f"tool:t{n}",
            "tool": "Edit", "input": {"file_path": f"/p/src/mod{n}.py"}, "output": "ok"}


@pytest.mark.anyio
async def test_first_prompt_starts_the_run_as_its_objective(tmp_path: Path) -> None:
    app = applier(tmp_path)
    await app.apply({"kind": "step", "session": "s1", "project": "/p", "key": "prompt:1",
                     "tool": "user_prompt", "input": {"prompt": "Add OAuth login"},
                     "objective": "Add OAuth login"})
    await app.apply(step_record("s1", 1))
    await app.apply(step_record("s1", 1))  # a replayed record writes nothing twice

    run = await app.run_of("s1", "/p", create=False)

    assert run is not None
    assert (run.objective, run.project, run.head_seq) == ("Add OAuth login", "/p", 2)


@pytest.mark.anyio
@pytest.mark.parametrize(("continues", "same"), [(True, True), (False, False)])
async def test_a_new_session_continues_the_project_run_by_setting(
    tmp_path: Path, continues: bool, same: bool
) -> None:
    app = applier(tmp_path, continue_project_run=continues)
    await app.apply(step_record("s1", 1))
    first = await app.run_of("s1", "/p", create=False)

    await app.apply(step_record("s2", 2))
    second = await app.run_of("s2", "/p", create=False)
    elsewhere = await app.run_of("s3", "/other", create=False)

    assert first is not None and second is not None
    assert (first.run_id == second.run_id) is same
    assert elsewhere is None


@pytest.mark.anyio
async def test_stop_checkpoints_when_due_and_session_end_checkpoints_what_is_left(
    tmp_path: Path,
) -> None:
    app = applier(tmp_path)
    await app.apply(step_record("s1", 1))
    await app.apply({"kind": "due", "session": "s1", "project": "/p"})
    run = await app.run_of("s1", "/p", create=False)
    assert run is not None and run.checkpoint_count == 0  # 1 step: not due yet

    for n in (2, 3):
        await app.apply(step_record("s1", n))
    await app.apply({"kind": "due", "session": "s1", "project": "/p",
                     "step": {"key": "msg:1", "tool": "thought", "reasoning": "Next: tests"}})
    run = await app.run_of("s1", "/p", create=False)
    assert run is not None and (run.checkpoint_count, run.working_steps) == (1, 0)

    await app.apply(step_record("s1", 5))
    await app.apply({"kind": "end", "session": "s1", "project": "/p", "reason": "other"})
    run = await app.run_of("s1", "/p", create=False)
    assert run is not None and (run.checkpoint_count, run.working_steps) == (2, 0)


@pytest.mark.anyio
async def test_context_fits_budget_and_chars_and_is_none_for_an_empty_run(
    tmp_path: Path,
) -> None:
    app = applier(tmp_path, max_context_chars=1500)
    for n in range(40):
        await app.apply(step_record("s1", n))
    run = await app.run_of("s1", "/p", create=False)
    assert run is not None

    text = await app.context(run, "compact", 600)
    empty = await app.episodes.start_run(T, "nothing yet")

    assert text is not None
    assert text.startswith("Earlier work in this project, kept by mcp-checkpoint (compact):")
    assert app.tokenizer.count(text) <= 600 and len(text) <= 1500
    assert "/p/src/mod39.py" in text
    assert await app.context(empty, "startup", 600) is None


def test_kept_context_is_read_once_and_only_for_its_budget(tmp_path: Path) -> None:
    app = applier(tmp_path)
    app.keep_context("s1", "the context", 2000)

    assert cached_context(tmp_path, "s1", 1000) == (False, None)
    app.keep_context("s1", "the context", 2000)
    assert cached_context(tmp_path, "s1", None) == (True, "the context")
    assert cached_context(tmp_path, "s1", None) == (False, None)


# -- install -------------------------------------------------------------------------------


def test_install_merges_keeps_what_is_there_and_is_idempotent(tmp_path: Path) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    theirs = {"matcher": "Edit|Write", "hooks": [{"type": "command", "command": "lint.sh"}]}
    settings.write_text(json.dumps({"model": "opus", "hooks": {"PostToolUse": [theirs]}}))

    first = install_claude_code(project=tmp_path, user=False, command="mcp-checkpoint")
    second = install_claude_code(project=tmp_path, user=False, command="mcp-checkpoint")

    merged = json.loads(settings.read_text())
    assert merged["model"] == "opus"
    assert merged["hooks"]["PostToolUse"][0] == theirs
    assert set(merged["hooks"]) == set(HOOK_EVENTS)
    ours = merged["hooks"]["PostToolUse"][1]["hooks"][0]
    assert ours["command"] == "mcp-checkpoint hook claude-code" and ours["timeout"] == 10
    servers = json.loads((tmp_path / ".mcp.json").read_text())
    assert servers["mcpServers"]["checkpoint"] == {
        "type": "stdio", "command": "mcp-checkpoint", "args": ["serve"]
    }
    assert first[0].backup is not None and json.loads(first[0].backup.read_text())["model"]
    assert [c.changed for c in second] == [False, False]
    assert [line.endswith("unchanged") for c in second for line in c.lines()] == [True, True]


def test_install_updates_its_command_and_uninstall_removes_only_its_entries(
    tmp_path: Path,
) -> None:
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}}))
    install_claude_code(project=tmp_path, user=False, command="mcp-checkpoint")

    updated = install_claude_code(project=tmp_path, user=False, command="mcp-checkpoint",
                                  budget=1500)
    removed = install_claude_code(project=tmp_path, user=False, uninstall=True)

    assert len(updated[0].updated) == len(HOOK_EVENTS)
    assert len(removed[0].removed) == len(HOOK_EVENTS)
    assert json.loads((tmp_path / ".claude" / "settings.json").read_text()) == {}
    assert json.loads((tmp_path / ".mcp.json").read_text()) == {
        "mcpServers": {"other": {"command": "x"}}
    }


def test_install_user_scope_writes_home_files(tmp_path: Path) -> None:
    (tmp_path / ".claude.json").write_text(json.dumps({"numStartups": 3, "projects": {}}))

    install_claude_code(project=None, user=True, command="/opt/bin/mcp-checkpoint",
                        home=tmp_path)

    state = json.loads((tmp_path / ".claude.json").read_text())
    assert state["numStartups"] == 3 and "checkpoint" in state["mcpServers"]
    hooks = json.loads((tmp_path / ".claude" / "settings.json").read_text())["hooks"]
    assert hooks["SessionStart"][0]["hooks"][0]["command"] == (
        "/opt/bin/mcp-checkpoint hook claude-code"
    )


def test_install_refuses_a_settings_file_it_cannot_read(tmp_path: Path) -> None:
    broken = tmp_path / ".claude" / "settings.json"
    broken.parent.mkdir()
    broken.write_text("{not json")

    with pytest.raises(ConfigError, match="fix or move it"):
        install_claude_code(project=tmp_path, user=False)
    assert broken.read_text() == "{not json"


def test_a_bash_response_is_recorded_as_its_output_without_empty_fields() -> None:
    ok = to_record(parse(payload(
        "PostToolUse", tool_name="Bash", tool_input={"command": "ls", "description": ""},
        tool_response={"stdout": "a.py\nb.py", "stderr": "", "interrupted": False,
                       "isImage": False},
        tool_use_id="t1"), environ={}))
    both = to_record(parse(payload(
        "PostToolUse", tool_name="Bash", tool_input={"command": "make"},
        tool_response={"stdout": "built", "stderr": "warning: x", "interrupted": False},
        tool_use_id="t2"), environ={}))

    assert ok is not None and both is not None
    assert (ok["input"], ok["output"]) == ({"command": "ls"}, "a.py\nb.py")
    assert both["output"] == {"stdout": "built", "stderr": "warning: x"}


# -- other clients -------------------------------------------------------------------------


def test_gemini_after_tool_is_keyed_by_the_call_and_flags_its_error() -> None:
    from mcp_checkpoint.adapters.clients import client

    gemini = client("gemini-cli")
    base = {"session_id": "g", "transcript_path": "/t.json", "cwd": "/p",
            "timestamp": "2026-12-07T10:30:00Z", "hook_event_name": "AfterTool",
            "tool_name": "run_shell_command", "tool_input": {"command": "pytest"}}
    ok = to_record(parse({**base, "tool_response": {"llmContent": "3 passed"}},
                         environ={"GEMINI_PROJECT_DIR": "/root/p"}, client=gemini))
    failed = to_record(parse({**base, "timestamp": "2026-12-07T10:30:05Z",
                              "tool_response": {"llmContent": "boom", "error": "exit 1"}},
                             client=gemini))
    again = to_record(parse({**base, "tool_response": {"llmContent": "3 passed"}},
                            client=gemini))

    assert ok is not None and failed is not None and again is not None
    assert ok["project"] == "/root/p" and ok["client"] == "gemini-cli"
    assert (ok["status"], failed["status"]) == ("ok", "error")
    assert ok["key"] == again["key"] != failed["key"] and ok["key"].startswith("call:")
    assert to_record(parse({**base, "hook_event_name": "AfterAgent",
                            "prompt_response": "Done."}, client=gemini))["step"][  # type: ignore[index]
        "reasoning"] == "Done."


def test_codex_post_tool_use_is_keyed_by_its_call_id() -> None:
    from mcp_checkpoint.adapters.clients import client

    record = to_record(parse({
        "session_id": "c", "transcript_path": None, "cwd": "/p", "hook_event_name": "PostToolUse",
        "model": "gpt-5-codex", "turn_id": "t-1", "permission_mode": "default",
        "tool_name": "Bash", "tool_input": {"command": "ls"}, "tool_response": "a\nb",
        "tool_use_id": "call_1"}, environ={"CLAUDE_PROJECT_DIR": "/elsewhere"},
        client=client("codex")))

    assert record is not None
    assert (record["key"], record["output"], record["project"]) == ("tool:call_1", "a\nb", "/p")


@pytest.mark.parametrize(
    ("client", "path", "events"),
    [
        pytest.param("gemini-cli", ".gemini/settings.json",
                     {"SessionStart", "BeforeAgent", "AfterTool", "PreCompress", "AfterAgent",
                      "SessionEnd"}, id="gemini-cli"),
        pytest.param("codex", ".codex/hooks.json",
                     {"SessionStart", "UserPromptSubmit", "PostToolUse", "PreCompact", "Stop"},
                     id="codex"),
    ],
)
def test_install_other_clients_merges_and_uninstalls_only_its_entries(
    tmp_path: Path, client: str, path: str, events: set[str]
) -> None:
    from mcp_checkpoint.adapters.install import install_client

    settings = tmp_path / path
    settings.parent.mkdir()
    theirs = {"hooks": [{"type": "command", "command": "notify.sh"}]}
    settings.write_text(json.dumps({"theme": "dark", "hooks": {"SessionStart": [theirs]}}))

    first = install_client(client, project=tmp_path, user=False, command="mcp-checkpoint")
    second = install_client(client, project=tmp_path, user=False, command="mcp-checkpoint")
    merged = json.loads(settings.read_text())
    removed = install_client(client, project=tmp_path, user=False, uninstall=True,
                             command="mcp-checkpoint")
    left = json.loads(settings.read_text())

    assert len(first) == 1 and first[0].backup is not None
    assert set(merged["hooks"]) == events and merged["hooks"]["SessionStart"][0] == theirs
    ours = merged["hooks"]["SessionStart"][1]["hooks"][0]
    assert ours["command"] == f"mcp-checkpoint hook {client}"
    if client == "gemini-cli":  # milliseconds, a name, the server, hooks switched on
        assert ours["timeout"] == 20000 and ours["name"] == "mcp-checkpoint-SessionStart"
        assert merged["mcpServers"]["checkpoint"] == {"command": "mcp-checkpoint",
                                                      "args": ["serve"]}
        assert merged["tools"]["enableHooks"] is True
        assert "mcpServers" not in left
    else:
        assert ours["timeout"] == 20 and "matcher" not in merged["hooks"]["PostToolUse"][0]
        assert "mcpServers" not in merged
    assert not second[0].changed
    assert left["theme"] == "dark" and left["hooks"] == {"SessionStart": [theirs]}
    assert removed[0].removed


def test_camel_case_common_fields_are_read_too() -> None:
    event = parse({"hookEventName": "PostToolUse", "sessionId": "v-1", "cwd": "/p",
                   "timestamp": "2026-12-07T10:30:00.000Z", "transcript_path": "/t.json",
                   "tool_name": "editFiles", "tool_input": {"files": ["src/main.ts"]},
                   "tool_response": "ok", "tool_use_id": "tool-123"}, environ={})
    record = to_record(event)

    assert (event.name, event.session_id) == ("PostToolUse", "v-1")
    assert record is not None and record["key"] == "tool:tool-123"
