"""Claude Code hooks -> core services: capture without the model's effort.

``mcp-checkpoint hook claude-code`` reads one hook event (the JSON Claude Code's hooks
reference documents) on stdin:

- ``PostToolUse`` / ``PostToolUseFailure`` / ``UserPromptSubmit`` / ``Stop`` /
  ``SessionEnd`` are turned into spool records (``_spool``) and applied by a detached
  drainer (``_drainer``), so the hook process exits in tens of milliseconds;
- ``SessionStart`` and ``PreCompact`` need the store at once: they apply what is spooled,
  then checkpoint (PreCompact) or rehydrate the session's run and print it as
  ``hookSpecificOutput.additionalContext`` (SessionStart). ``PreCompact`` also keeps the
  rendered context so that the ``SessionStart(compact)`` right after it only prints it.

Whatever happens the hook exits 0 and prints nothing but that JSON; problems go to
``<data_dir>/hooks/hooks.log``. The adapter holds no rules of its own: what a checkpoint
keeps, when one is due and how a context is packed are core's. It only maps payloads to
``StepDraft`` s and sessions to runs. Other clients' adapters follow the same shape:
``parse`` -> ``to_record`` -> ``Applier``.

Only stdlib modules (and ``core.redact``, which imports ``re``) are imported at module
level: the core, pydantic and the store load only on the slow path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from mcp_checkpoint.adapters._spool import HookLog, Spool, data_dir_from_env
from mcp_checkpoint.adapters.clients import CLAUDE_CODE, CLIENTS, Client, client

TYPE_CHECKING = False  # not typing's: a hook process imports as little as it can
if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import IO, Any

    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.models import Run, StepAck, StepDraft
    from mcp_checkpoint.core.ports import Tokenizer

__all__ = [
    "CLIENT",
    "CLIENTS",
    "EVENTS",
    "Applier",
    "HookEvent",
    "HookInputError",
    "fit_json",
    "main",
    "parse",
    "to_record",
]

CLIENT = "claude-code"
EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PostToolUse",
    "PostToolUseFailure",
    "PreCompact",
    "Stop",
    "SessionEnd",
)
_SPOOLED = {"prompt", "tool", "stop", "end"}  # actions applied by the drainer
_MAX_INPUT_BYTES = 64 * 1024 * 1024
_MAX_FIELD_CHARS = 1_000_000  # what the fast path keeps of one string before the drainer fits it
_CACHE_MAX_AGE_S = 1800.0
# Tools of this server: the model's own record_step calls are already in the ledger.
# (Gemini CLI's hooks reference names them ``mcp__<server>__<tool>``, its MCP guide
# ``mcp_<server>_<tool>``: both are ours.)
_OWN_TOOLS = ("mcp__checkpoint__", "mcp_checkpoint_")


def _sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data`` (hashlib is imported only when needed: it loads
    OpenSSL, which the per-tool-call path does without)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


class HookInputError(ValueError):
    """The hook's stdin is not a hook event this adapter understands."""


class HookEvent:
    """One hook invocation: the documented common fields and the whole payload. (A plain
    class: ``dataclasses`` would cost the per-tool-call process a noticeable import.)"""

    __slots__ = (
        "action", "client", "cwd", "name", "payload", "project", "session_id",
        "transcript_path",
    )

    def __init__(
        self,
        *,
        name: str,
        session_id: str,
        cwd: str,
        project: str,
        transcript_path: str | None,
        payload: dict[str, Any],
        client: Client = CLAUDE_CODE,
    ) -> None:
        self.client = client
        self.action = client.action(name)
        self.name = name
        self.session_id = session_id
        self.cwd = cwd
        self.project = project
        self.transcript_path = transcript_path
        self.payload = payload


def parse(
    payload: object, environ: dict[str, str] | None = None, client: Client = CLAUDE_CODE
) -> HookEvent:
    """The event of a decoded hook payload. The project is the client's project variable
    (``$CLAUDE_PROJECT_DIR``, ``$GEMINI_PROJECT_DIR``: the root the session started in;
    ``cwd`` follows ``cd`` and worktrees), else ``cwd``."""
    if not isinstance(payload, dict):
        raise HookInputError(f"the hook input is a JSON {type(payload).__name__}, not an object")
    # (VS Code's agent hooks send these two common fields in camelCase.)
    name = payload.get("hook_event_name") or payload.get("hookEventName")
    session_id = payload.get("session_id") or payload.get("sessionId")
    if not isinstance(name, str) or not name:
        raise HookInputError("the hook input has no hook_event_name")
    if not isinstance(session_id, str) or not session_id:
        raise HookInputError(f"{name}: the hook input has no session_id")
    cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else ""
    env = os.environ if environ is None else environ
    project = (env.get(client.project_env) if client.project_env else None) or cwd or ""
    transcript = payload.get("transcript_path")
    return HookEvent(
        name=name,
        session_id=session_id,
        cwd=cwd or "",
        project=os.path.normpath(project) if project else "",
        transcript_path=transcript if isinstance(transcript, str) else None,
        payload=payload,
        client=client,
    )


def _key(prefix: str, value: object) -> str:
    """An idempotency key from a client id (hashed when it would not fit an id)."""
    text = str(value)
    if len(text) <= 100 and text.isascii() and all(c.isalnum() or c in "-_.:" for c in text):
        return f"{prefix}:{text}"
    return f"{prefix}:{_sha256(text.encode())[:40]}"


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_FIELD_CHARS:
        half = _MAX_FIELD_CHARS // 2
        return value[:half] + "\n… [cut by the hook] …\n" + value[-half:]
    if isinstance(value, list):
        return [_clip(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _clip(v) for k, v in value.items()}
    return value


def _lean(value: Any) -> Any:
    """A tool's input or response without its empty fields (``"stderr": ""``,
    ``"interrupted": false``...), and a response that is only ``stdout`` as that text: what
    a step shows is the call, not the client's envelope."""
    if not isinstance(value, dict):
        return value
    kept = {k: v for k, v in value.items() if v not in (None, False, "", [], {})}
    if list(kept) == ["stdout"] and isinstance(kept["stdout"], str):
        return kept["stdout"]
    return kept


def to_record(event: HookEvent) -> dict[str, Any] | None:
    """The spool record of a spooled event, or None when there is nothing to keep.

    Records: ``step`` (a StepDraft's fields, an idempotency ``key`` and, for a prompt, the
    ``objective`` a new run takes), ``due`` (checkpoint if the last step said one is due)
    and ``end`` (checkpoint what working memory holds)."""
    p = event.payload
    action = event.action
    base: dict[str, Any] = {
        "v": 1,
        "client": event.client.name,
        "event": event.name,
        "session": event.session_id,
        "project": event.project,
        "at": time.time(),
    }
    if action == "tool":
        tool = p.get("tool_name")
        if not isinstance(tool, str) or not tool:
            raise HookInputError(f"{event.name}: the hook input has no tool_name")
        if tool.startswith(_OWN_TOOLS):
            return None
        failed = event.client.tool_failed(event.name, p)
        id_field = event.client.tool_id_field
        tool_use_id = p.get(id_field) if id_field else None
        if tool_use_id:
            key = _key("tool", tool_use_id)
        elif id_field is None:
            # No call id in this client's payload: the call itself, with its time, is
            # the key (a replayed event writes nothing twice).
            # (zlib's checksum: hashlib would load OpenSSL into the per-call process.)
            import zlib

            call = json.dumps([event.session_id, p.get("tool_input")], sort_keys=True,
                              default=str)
            key = _key("call", f"{p.get('timestamp')}:{tool}:{zlib.crc32(call.encode()):08x}")
        else:
            key = _key("evt", os.urandom(12).hex())
        if event.name in event.client.failed_events:
            output = p.get("error")
        else:
            output = p.get("tool_response")
        return {
            **base,
            "kind": "step",
            "key": key,
            "tool": tool,
            "input": _clip(_lean(p.get("tool_input"))),
            "output": _clip(_lean(output)),
            "status": "error" if failed else "ok",
        }
    if action == "prompt":
        prompt = p.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return None
        prompt_id = p.get("prompt_id")
        key = _key("prompt", prompt_id) if prompt_id else _key("evt", os.urandom(12).hex())
        return {
            **base,
            "kind": "step",
            "key": key,
            "tool": "user_prompt",
            "input": {"prompt": _clip(prompt)},
            "objective": prompt,
        }
    if action == "stop":
        message = p.get(event.client.message_field)
        record: dict[str, Any] = {**base, "kind": "due"}
        if isinstance(message, str) and message.strip():
            record["step"] = {
                "key": _thought_key(event.session_id, message),
                "tool": "thought",
                "reasoning": _clip(message.strip()),
            }
        return record
    if action == "end":
        reason = p.get("reason")
        return {**base, "kind": "end", "reason": reason if isinstance(reason, str) else None}
    return None


def fit_json(value: Any, max_bytes: int) -> Any:
    """``value`` made to fit ``max_bytes`` of JSON: its longest strings cut in the middle
    (head and tail kept: a command's failing tail matters as much as its head); as a last
    resort the whole value becomes such a cut string."""

    def size(v: Any) -> int:
        return len(json.dumps(v, ensure_ascii=False).encode())

    def cut(text: str, keep: int) -> str:
        keep = max(keep, 64)
        if len(text) <= keep:
            return text
        head, tail = keep * 2 // 3, keep // 3
        return f"{text[:head]}\n… [{len(text) - head - tail} characters cut] …\n{text[-tail:]}"

    current = value
    for _ in range(6):
        over = size(current) - max_bytes
        if over <= 0:
            return current
        longest = _longest_string(current)
        if longest == 0:
            break
        # Cap every string at a length that removes the excess (bytes >= chars).
        cap = max(longest - over - 128, longest // 2, 64)

        def shrink(v: Any, cap: int = cap) -> Any:
            if isinstance(v, str):
                return cut(v, cap)
            if isinstance(v, list):
                return [shrink(item) for item in v]
            if isinstance(v, dict):
                return {k: shrink(item) for k, item in v.items()}
            return v

        current = shrink(current)
    text = json.dumps(current, ensure_ascii=False)
    while len(text.encode()) > max_bytes and len(text) > 64:
        text = cut(text, len(text) * 2 // 3)
    return text


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    if isinstance(value, dict):
        return max((_longest_string(v) for v in value.values()), default=0)
    return 0


# -- the slow path: core services ----------------------------------------------------------


class Applier:
    """Applies hook events to one store: sessions to runs, records to steps and
    checkpoints, and SessionStart to a rehydrated context."""

    def __init__(
        self, episodes: Episodes, tokenizer: Tokenizer, settings: Settings, data_dir: Path
    ) -> None:
        from mcp_checkpoint.core.models import Tenant

        self.episodes = episodes
        self.tokenizer = tokenizer
        self.settings = settings
        self.tenant = Tenant(settings.tenant)
        self.sessions = data_dir / "hooks" / "sessions"
        self.cache = data_dir / "hooks" / "context"
        self._acks: dict[str, StepAck] = {}

    # sessions ----------------------------------------------------------------------------

    def _session_file(self, session_id: str) -> Path:
        return self.sessions / (_sha256(session_id.encode())[:32] + ".json")

    def _remember(self, session_id: str, run_id: str, project: str) -> None:
        self.sessions.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._session_file(session_id)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps({"session_id": session_id, "run_id": run_id, "project": project}),
            encoding="utf-8",
        )
        os.replace(tmp, path)

    async def run_of(
        self, session_id: str, project: str, *, objective: str | None = None, create: bool,
        label: str = CLAUDE_CODE.label,
    ) -> Run | None:
        """The session's run: the one it was mapped to, else (setting
        ``hooks.continue_project_run``) the project's latest active run, else a new run of
        the project when ``create`` (its objective: ``objective``, the first prompt)."""
        from mcp_checkpoint.errors import NotFoundError

        path = self._session_file(session_id)
        if path.exists():
            try:
                known = json.loads(path.read_text(encoding="utf-8"))
                return await self.episodes.get_run(self.tenant, str(known["run_id"]))
            except (ValueError, KeyError, TypeError, NotFoundError):
                path.unlink(missing_ok=True)
        run: Run | None = None
        if self.settings.hooks.continue_project_run and project:
            found = await self.episodes.list_runs(
                self.tenant, status="active", limit=1, project=project
            )
            run = found[0] if found else None
        if run is None and create:
            limit = self.settings.limits.max_text_chars
            text = " ".join((objective or "").split())
            if not text:
                text = f"Work in {project or 'this directory'} ({label} session {session_id})"
            run = await self.episodes.start_run(
                self.tenant, text[:limit], project=project[:limit] or None
            )
        if run is not None:
            self._remember(session_id, run.run_id, project)
        return run

    # records -----------------------------------------------------------------------------

    async def _record(self, run: Run, draft: StepDraft) -> None:
        draft = draft.model_copy(
            update={
                "input": fit_json(draft.input, self.settings.limits.max_step_bytes // 2),
                "output": fit_json(draft.output, self.settings.limits.max_step_bytes // 3),
            }
        )
        room = self.settings.limits.max_step_bytes // 8
        if draft.reasoning and len(draft.reasoning.encode()) > room:
            draft = draft.model_copy(update={"reasoning": fit_json(draft.reasoning, room)})
        self._acks[run.run_id] = await self.episodes.record_step(self.tenant, run.run_id, draft)

    async def apply(self, record: dict[str, Any]) -> None:
        """Apply one spool record."""
        from mcp_checkpoint.core.models import StepDraft

        session = str(record.get("session") or "")
        project = str(record.get("project") or "")
        kind = record.get("kind")
        if kind == "step":
            known = CLIENTS.get(str(record.get("client")))
            run = await self.run_of(
                session, project, objective=record.get("objective"), create=True,
                label=known.label if known else "hook",
            )
            if run is None:  # create=True always gives a run
                return
            await self._record(
                run,
                StepDraft(
                    tool=str(record.get("tool") or "tool"),
                    input=record.get("input"),
                    output=record.get("output"),
                    reasoning=record.get("reasoning"),
                    status="error" if record.get("status") == "error" else "ok",
                    idempotency_key=record.get("key"),
                ),
            )
        elif kind == "due":
            run = await self.run_of(session, project, create=False)
            if run is None:
                return
            step = record.get("step")
            if isinstance(step, dict):
                await self._record(
                    run,
                    StepDraft(
                        tool=str(step.get("tool") or "thought"),
                        reasoning=step.get("reasoning"),
                        idempotency_key=step.get("key"),
                    ),
                )
            ack = self._acks.get(run.run_id)
            if ack is not None and ack.checkpoint_due:
                await self.checkpoint(run.run_id)
        elif kind == "end":
            run = await self.run_of(session, project, create=False)
            if run is not None:
                await self.checkpoint(run.run_id)

    async def checkpoint(self, run_id: str) -> None:
        """Checkpoint the run's working memory by the server's distillation (rules: hooks
        have no sampling), unless working memory is empty."""
        from mcp_checkpoint.core.models import CheckpointPatch

        run = await self.episodes.get_run(self.tenant, run_id)
        if run.working_steps > 0:
            await self.episodes.checkpoint(self.tenant, run_id, CheckpointPatch())
            self._acks.pop(run_id, None)

    # contexts ----------------------------------------------------------------------------

    async def context(self, run: Run, source: str, budget: int) -> str | None:
        """The text SessionStart injects: a header and the run's rehydrated context,
        together within ``budget`` tokens (the core's counter) and
        ``hooks.max_context_chars`` characters; None when the run holds nothing yet."""
        if run.head_seq == 0 and run.latest_checkpoint_id is None:
            return None
        tok = self.tokenizer
        header = f"Earlier work in this project, kept by mcp-checkpoint ({source}):\n\n"
        max_chars = self.settings.hooks.max_context_chars
        floor = self.settings.limits.min_budget_tokens
        room = budget - tok.count(header) - 1
        for _ in range(6):
            if room < floor:
                return None
            ctx = await self.episodes.rehydrate(self.tenant, run.run_id, budget_tokens=room)
            text = header + ctx.context
            over_tokens = tok.count(text) - budget
            if over_tokens <= 0 and len(text) <= max_chars:
                return text
            shrink = max(over_tokens, 0) + 8
            if len(text) > max_chars:
                shrink = max(shrink, room - int(room * (max_chars - len(header)) / len(text)))
            room -= shrink
        return None

    def _cache_file(self, session_id: str) -> Path:
        return self.cache / (_sha256(session_id.encode())[:32] + ".json")

    def keep_context(self, session_id: str, text: str | None, budget: int) -> None:
        """Keep the context a SessionStart(compact) of this session will print."""
        self.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._cache_file(session_id)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"text": text, "budget": budget, "at": time.time()}), "utf-8")
        os.replace(tmp, path)


def _output(text: str | None, stdout: IO[str], who: Client = CLAUDE_CODE,
            event: str = "SessionStart") -> None:
    """Print ``text`` for the model, in ``who``'s documented shape for ``event``."""
    if text:
        stdout.write(json.dumps(who.output(event, text), ensure_ascii=False))
        stdout.flush()
        _printed.append(event)


_printed: list[str] = []  # what this process printed (a hook process handles one event)


def cached_context(
    data_dir: Path, session_id: str, budget: int | None,
    max_age: float | None = _CACHE_MAX_AGE_S,
) -> tuple[bool, str | None]:
    """(found, text) of the context PreCompact kept for this session (for ``budget``, when
    given; at most ``max_age`` seconds old, when given); consumed once."""
    path = data_dir / "hooks" / "context" / (
        _sha256(session_id.encode())[:32] + ".json"
    )
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, None
    path.unlink(missing_ok=True)
    if (
        not isinstance(kept, dict)
        or (budget is not None and kept.get("budget") != budget)
        or (max_age is not None and time.time() - float(kept.get("at", 0)) > max_age)
    ):
        return False, None
    text = kept.get("text")
    return True, text if isinstance(text, str) else None


def _thought_key(session_id: str, text: str) -> str:
    """The idempotency key of what the assistant said: by its text, so that the message
    Stop reports and the same message read from the transcript at PreCompact are one
    step, not two."""
    return _key("msg", _sha256(f"{session_id}\n{text.strip()}".encode())[:40])


def _transcript_thoughts(path: str | None, limit_bytes: int = 256 * 1024) -> list[tuple[str, str]]:
    """(uuid, text) of the assistant's text messages at the end of a transcript (JSON lines,
    newest last), so PreCompact keeps what the model said since the last hook event. A file
    that cannot be read or parsed gives []."""
    if not path:
        return []
    try:
        with open(os.path.expanduser(path), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(max(end - limit_bytes, 0))
            lines = fh.read().splitlines()[1:] if end > limit_bytes else fh.read().splitlines()
    except OSError:
        return []
    found: list[tuple[str, str]] = []
    for raw in lines:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") != "assistant":
            continue
        message = entry.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        text = "\n".join(
            b["text"] for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ).strip()
        if text:
            found.append((str(entry.get("uuid") or _sha256(raw)[:32]), text))
    return found[-3:]


async def _slow(event: HookEvent, budget: int | None, spool: Spool, stdout: IO[str]) -> None:
    from mcp_checkpoint.adapters import _drainer
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.models import StepDraft
    from mcp_checkpoint.core.tokens import HeuristicTokenizer
    from mcp_checkpoint.storage import make_store

    settings = Settings()
    hook_budget = budget or settings.hooks.budget_tokens
    store = make_store(settings)
    await store.open()
    try:
        tok = HeuristicTokenizer()
        applier = Applier(Episodes(store, tok, settings), tok, settings, settings.data_dir)
        await _drainer.drain(spool, applier)
        if event.action == "start":
            source = str(event.payload.get("source") or "startup")
            run = await applier.run_of(event.session_id, event.project, create=False)
            if run is not None:
                _output(await applier.context(run, source, hook_budget), stdout,
                        event.client, event.client.start_output_event)
        elif event.action == "compact":
            run = await applier.run_of(event.session_id, event.project, create=False)
            if run is None:
                return
            # Claude Code's transcript (JSON lines of its messages) holds what the model
            # said since the last event; other clients' transcripts are not read.
            thoughts = (_transcript_thoughts(event.transcript_path)
                        if event.client is CLAUDE_CODE else [])
            for _, text in thoughts:
                await applier._record(
                    run,
                    StepDraft(
                        tool="thought",
                        reasoning=_clip(text.strip()),
                        idempotency_key=_thought_key(event.session_id, text),
                    ),
                )
            await applier.checkpoint(run.run_id)
            run = await applier.episodes.get_run(applier.tenant, run.run_id)
            applier.keep_context(
                event.session_id, await applier.context(run, "compact", hook_budget), hook_budget
            )
    finally:
        await store.close()


def run_drainer() -> int:
    """The detached drainer (``_drainer.run``), applying with the core services."""
    from mcp_checkpoint.adapters import _drainer

    return _drainer.run(data_dir_from_env(), _open_applier)


@contextlib.asynccontextmanager
async def _open_applier(data_dir: Path) -> AsyncIterator[Applier]:
    """An ``Applier`` over the store the settings name, open while the block runs."""
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.episodes import Episodes
    from mcp_checkpoint.core.tokens import HeuristicTokenizer
    from mcp_checkpoint.storage import make_store

    settings = Settings()
    store = make_store(settings)
    await store.open()
    try:
        tok = HeuristicTokenizer()
        yield Applier(Episodes(store, tok, settings), tok, settings, data_dir)
    finally:
        await store.close()


def _deadline_seconds() -> float:
    """``hooks.deadline_seconds`` as Settings reads it (the fast path loads no pydantic)."""
    raw = os.environ.get("MCP_CHECKPOINT_HOOKS__DEADLINE_SECONDS", "")
    try:
        value = float(raw)
    except ValueError:
        return 8.0
    return value if value > 0 else 8.0


def main(
    budget: int | None, stdin: IO[bytes], stdout: IO[str], client_name: str = CLAUDE_CODE.name
) -> int:
    """Handle one hook event of ``client_name`` from ``stdin``; always returns 0
    (fail-soft)."""
    data_dir = data_dir_from_env()
    log = HookLog(data_dir)
    name = "" if client_name == CLAUDE_CODE.name else client_name

    deadline = _deadline_seconds()

    def give_up(signum: int, frame: object) -> None:
        log.write(name, f"gave up after {deadline:g} s (hooks.deadline_seconds)")
        os._exit(0)

    signal.signal(signal.SIGALRM, give_up)
    signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        who = client(client_name)
        raw = stdin.read(_MAX_INPUT_BYTES + 1)
        if len(raw) > _MAX_INPUT_BYTES:
            raise HookInputError(f"the hook input is over {_MAX_INPUT_BYTES} bytes")
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise HookInputError(f"the hook input is not JSON: {exc}") from None
        event = parse(payload, client=who)
        name = event.name if who is CLAUDE_CODE else f"{who.name} {event.name}"
        action = event.action
        if action == "compact":
            # It distils the whole working memory; its installed timeout is 30 s.
            deadline *= 3
            signal.setitimer(signal.ITIMER_REAL, deadline)
        spool = Spool(data_dir)
        drainer = [sys.executable, "-m", "mcp_checkpoint", "hook", who.name, "--drain"]
        if action in _SPOOLED:
            record = to_record(event)
            if record is not None:
                from mcp_checkpoint.core.redact import Redactor

                spool.append(Redactor().json(record))
                spool.spawn_drainer(drainer)
            if action == "prompt" and who.reinject_on_prompt and who.prompt_output_event:
                # This client starts no session after compacting: the first prompt after
                # it gets the context PreCompact kept.
                # The next prompt may come hours later: the context kept at compaction
                # is still the one to give back.
                found, text = cached_context(data_dir, event.session_id, budget, None)
                if found:
                    _output(text, stdout, who, who.prompt_output_event)
            return 0
        if action == "start" and event.payload.get("source") == "compact":
            found, text = cached_context(data_dir, event.session_id, budget)
            if found:
                _output(text, stdout, who, who.start_output_event)
                if spool.pending():
                    spool.spawn_drainer(drainer)
                return 0
        if action not in ("start", "compact"):
            log.write(name, "ignored: not an event this hook handles")
            return 0
        import anyio

        from mcp_checkpoint.adapters._spool import _locked

        with _locked(spool.drain_lock):
            anyio.run(_slow, event, budget, spool, stdout)
    except Exception as exc:  # fail-soft: log, let the session go on
        log.write(name, f"{type(exc).__name__}: {exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        quiet = CLIENTS[client_name].quiet if client_name in CLIENTS else ""
        if quiet and not _printed:
            with contextlib.suppress(OSError, ValueError):
                stdout.write(quiet)
                stdout.flush()
    return 0

