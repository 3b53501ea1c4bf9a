"""The clients whose hooks mcp-checkpoint handles, as data: what each event means.

Every client's hook sends one JSON event on stdin. The hook machinery
(:mod:`mcp_checkpoint.adapters.claude_code`, the first client and the shared base) turns
an event into one of a few actions, the same for every client:

- ``start``: a session starts; find its run and print the rehydrated context;
- ``prompt``: the user's prompt, recorded as a step (the first one is the run's
  objective); after a compaction the client has no start event for, also the moment the
  context is printed again (``reinject_on_prompt``);
- ``tool``: a tool call, recorded as a step keyed by the client's call id;
- ``compact``: the client is about to compact (or compress) the conversation:
  checkpoint and keep the context for the start or prompt that follows;
- ``stop``: a turn ended: its last message as a thought, a checkpoint when one is due;
- ``end``: the session ended: checkpoint what working memory holds.

A :class:`Client` says which event name is which action, where the fields are, and how
the context is printed back. Stdlib only: the per-tool-call process imports this.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: a hook process imports as little as it can
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CLIENTS", "Client", "client"]


class Client:
    """One client's hook dialect. (A plain class: ``dataclasses`` costs the hook process
    an import.)"""

    __slots__ = (
        "actions",
        "failed_events",
        "label",
        "message_field",
        "name",
        "project_env",
        "prompt_output_event",
        "quiet",
        "reinject_on_prompt",
        "start_output_event",
        "tool_id_field",
    )

    def __init__(
        self,
        *,
        name: str,
        label: str,
        actions: dict[str, str],
        project_env: str | None,
        failed_events: tuple[str, ...] = (),
        tool_id_field: str | None = "tool_use_id",
        message_field: str = "last_assistant_message",
        start_output_event: str = "SessionStart",
        prompt_output_event: str | None = None,
        reinject_on_prompt: bool = False,
        quiet: str = "",
    ) -> None:
        self.name = name
        self.label = label
        self.actions = actions
        self.project_env = project_env
        self.failed_events = failed_events
        self.tool_id_field = tool_id_field
        self.message_field = message_field
        self.start_output_event = start_output_event
        self.prompt_output_event = prompt_output_event
        self.reinject_on_prompt = reinject_on_prompt
        self.quiet = quiet  # what the hook prints when it has nothing to say

    def action(self, event: str) -> str | None:
        """The action of a client event name (None: not an event this hook handles)."""
        return self.actions.get(event)

    def tool_failed(self, event: str, payload: dict[str, Any]) -> bool:
        """True when a tool event reports a failed call."""
        if event in self.failed_events:
            return True
        response = payload.get("tool_response")
        # Gemini CLI: the response object carries an optional ``error``.
        return self.name == "gemini-cli" and isinstance(response, dict) and bool(
            response.get("error"))

    def output(self, event: str, text: str) -> dict[str, Any]:
        """The JSON a hook prints to hand ``text`` to the model at ``event``."""
        return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


CLAUDE_CODE = Client(
    name="claude-code",
    label="Claude Code",
    actions={
        "SessionStart": "start",
        "UserPromptSubmit": "prompt",
        "PostToolUse": "tool",
        "PostToolUseFailure": "tool",
        "PreCompact": "compact",
        "Stop": "stop",
        "SessionEnd": "end",
    },
    project_env="CLAUDE_PROJECT_DIR",
    failed_events=("PostToolUseFailure",),
)

# Gemini CLI: no call id (the key is a digest of the call), a failed call carries
# ``tool_response.error``, the turn's answer is ``prompt_response``; compression
# (PreCompress) is followed by no start event, so the next prompt (BeforeAgent) gets the
# context back as its ``additionalContext``.
GEMINI_CLI = Client(
    name="gemini-cli",
    label="Gemini CLI",
    actions={
        "SessionStart": "start",
        "BeforeAgent": "prompt",
        "AfterTool": "tool",
        "PreCompress": "compact",
        "AfterAgent": "stop",
        "SessionEnd": "end",
    },
    project_env="GEMINI_PROJECT_DIR",
    tool_id_field=None,
    message_field="prompt_response",
    prompt_output_event="BeforeAgent",
    reinject_on_prompt=True,
    quiet="{}",  # its stdout is parsed as JSON; the hooks guide's examples print {}
)

# Codex: Claude Code's field names; no failure event and no start after compaction, so
# the next prompt (UserPromptSubmit) gets the context back.
CODEX = Client(
    name="codex",
    label="Codex",
    actions={
        "SessionStart": "start",
        "UserPromptSubmit": "prompt",
        "PostToolUse": "tool",
        "PreCompact": "compact",
        "Stop": "stop",
    },
    project_env=None,
    prompt_output_event="UserPromptSubmit",
    reinject_on_prompt=True,
)

CLIENTS: dict[str, Client] = {c.name: c for c in (CLAUDE_CODE, GEMINI_CLI, CODEX)}


def client(name: str) -> Client:
    """The client called ``name`` (KeyError when there is none)."""
    return CLIENTS[name]
