"""Asking the client's model to distil a checkpoint (MCP sampling): inside the tool's answer
under the 2026-07-28 flow (``Sampled``), over the connection's back-channel under older ones
(``_sample_legacy``). Either way the rules distiller takes over when the client cannot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server.mcpserver import Context, Resolve, Sample
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    REQUEST_TIMEOUT,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    SamplingMessage,
    TextContent,
)
from mcp_types.version import is_version_at_least
from pydantic import JsonValue, ValidationError

from mcp_checkpoint.errors import CheckpointError
from mcp_checkpoint.server.services import services_of

if TYPE_CHECKING:
    from mcp_checkpoint.server.services import Services


async def ask_model_to_distil(
    ctx: Context[Any, Any],
    run_id: str,
    through_seq: int | None = None,
    progress: list[str] | None = None,
    state: dict[str, JsonValue] | None = None,
    decisions: list[str] | None = None,
    next_actions: list[str] | None = None,
    open_questions: list[str] | None = None,
    errors: list[str] | None = None,
    artifacts: list[str] | None = None,
) -> Sample | None:
    """Resolver of ``checkpoint`` under the 2026-07-28 flow: when the caller wrote no
    content and its client can sample, ask the client's model to distil (the request rides
    the tool's answer, ``InputRequiredResult``, so every transport carries it). None
    otherwise: under older flows the tool body asks itself (``_sample_legacy``), so a
    transport without a back-channel or a failing client falls back to rules."""
    given = (progress, state, decisions, next_actions, open_questions, errors, artifacts)
    caps = ctx.client_capabilities
    if not _input_required_flow(ctx):
        return None
    if any(v is not None for v in given) or caps is None or caps.sampling is None:
        return None
    s = services_of(ctx)
    try:
        request = await s.episodes.sampling_request(s.tenant(), run_id, through_seq=through_seq)
    except CheckpointError:
        return None  # the tool body reports the error (unknown run, bad through_seq)
    if request is None:
        return None
    message = SamplingMessage(role="user", content=TextContent(type="text", text=request.text))
    return Sample([message], max_tokens=request.max_tokens, system_prompt=request.system_prompt)


Sampled = Annotated[CreateMessageResult | None, Resolve(ask_model_to_distil)]


def _input_required_flow(ctx: Context[Any, Any]) -> bool:
    """Whether the protocol carries sampling inside the tool's answer (2026-07-28 on)."""
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, "2026-07-28")


def _shown(text: str, limit: int = 200) -> str:
    """The client's own error text as a note may quote it: one line, bounded."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


async def _sample_legacy(
    ctx: Context[Any, Any], s: Services, run_id: str, through_seq: int | None
) -> tuple[str | None, str | None]:
    """Ask the client's model over the connection's back-channel (protocol 2025-11-25 and
    older): ``(answer, None)``, or ``(None, why not)`` when the client does not offer
    sampling, the transport cannot carry a request from the server (JSON responses,
    stateless HTTP), or the client's sampling fails or does not answer within
    ``sampling.timeout_seconds``. Never raises for the client's sake: rules take over."""
    caps = ctx.client_capabilities
    session = ctx.session
    if caps is not None and caps.sampling is None:
        return None, "the client does not offer sampling"
    if not session.can_send_request:
        return None, (
            "this transport cannot carry a request from the server to the client "
            "(stateless or JSON-response HTTP), so the client's model was not asked"
        )
    if caps is None:
        return None, "the client does not offer sampling"
    try:
        request = await s.episodes.sampling_request(s.tenant(), run_id, through_seq=through_seq)
    except CheckpointError:
        return None, None  # the checkpoint itself reports the error (unknown run, ...)
    if request is None:
        return None, None
    params = CreateMessageRequestParams(
        messages=[
            SamplingMessage(role="user", content=TextContent(type="text", text=request.text))
        ],
        max_tokens=request.max_tokens,
        system_prompt=request.system_prompt,
    )
    timeout = s.settings.sampling.timeout_seconds
    try:
        with anyio.fail_after(timeout + 1):  # a backstop; the request's own timeout fires first
            result = await session.send_request(
                CreateMessageRequest(params=params),
                CreateMessageResult,
                request_read_timeout_seconds=timeout,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_context.request_id),
            )
    except TimeoutError:
        return None, f"the client's sampling did not answer within {timeout:g} s"
    except MCPError as exc:
        if exc.error.code == REQUEST_TIMEOUT:
            return None, f"the client's sampling did not answer within {timeout:g} s"
        return None, f"the client's sampling failed: {_shown(exc.error.message)}"
    except ValidationError:
        return None, "the client's sampling answered with an invalid result"
    if not isinstance(result.content, TextContent):
        return None, "the client's model answered without text"
    return result.content.text, None

