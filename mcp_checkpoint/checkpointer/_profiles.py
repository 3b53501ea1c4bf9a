"""Context windows of well-known models, and the episode budget derived from one.

The table is a maintained list, not a discovery mechanism: a model missing from it (or
one whose window a deployment changed) is given with ``context_window=``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcp_checkpoint.errors import InvalidArgumentError

__all__ = ["CONTEXT_WINDOWS", "ModelProfile", "for_model"]

# Model name prefix -> context window in tokens, as the providers document them. The
# longest matching prefix wins, so "gpt-4.1-mini" finds "gpt-4.1" and "claude-3-5-haiku"
# finds its family.
CONTEXT_WINDOWS: dict[str, int] = {
    # Anthropic
    "claude-opus-4": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-3-7-sonnet": 200_000,
    "claude-3-5-sonnet": 200_000,
    "claude-3-5-haiku": 200_000,
    "claude-3-opus": 200_000,
    "claude-3-haiku": 200_000,
    # OpenAI
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    # Google
    "gemini-2.5-pro": 1_048_576,
    "gemini-2.5-flash": 1_048_576,
    "gemini-2.0-flash": 1_048_576,
    "gemini-1.5-pro": 2_097_152,
    "gemini-1.5-flash": 1_048_576,
    # Open-weight families (their common long-context releases)
    "llama-3.1": 131_072,
    "llama-3.2": 131_072,
    "llama-3.3": 131_072,
    "llama-4": 1_048_576,
    "mistral-large": 131_072,
    "mistral-small": 32_768,
    "codestral": 262_144,
    "deepseek-v3": 131_072,
    "deepseek-r1": 131_072,
    "qwen2.5": 131_072,
    "qwen3": 131_072,
}

# The share of the window an episode may fill with the rehydrated context: the rest is the
# model's own work (tool calls, outputs, reasoning) until the next checkpoint.
DEFAULT_SHARE = 0.25
# Never derive more than this, whatever the window (a larger resume context costs more than
# it helps; the server's own limit is limits.max_budget_tokens).
MAX_DERIVED_BUDGET = 64_000
MIN_BUDGET = 1_000


@dataclass(frozen=True)
class ModelProfile:
    """A model's context window and the episode budget derived from it."""

    model: str
    context_window: int
    budget_tokens: int


def _normalise(name: str) -> str:
    base = name.strip().lower().rsplit("/", 1)[-1]  # "anthropic/claude-..." -> "claude-..."
    base = re.sub(r"[:@].*$", "", base)  # "model:tag", "model@version"
    return base.replace("_", "-")


def for_model(
    name: str, *, context_window: int | None = None, share: float = DEFAULT_SHARE
) -> ModelProfile:
    """The profile of the model ``name``: its context window (from ``CONTEXT_WINDOWS`` by
    longest prefix, or ``context_window`` when given) and the episode budget, ``share`` of
    the window, between 1,000 and 64,000 tokens.

    An unknown model without ``context_window`` is an InvalidArgumentError naming the
    families the table knows.
    """
    if not 0 < share <= 1:
        raise InvalidArgumentError("share must be in (0, 1]")
    key = _normalise(name)
    if context_window is None:
        matches = [p for p in CONTEXT_WINDOWS if key.startswith(p)]
        if not matches:
            known = ", ".join(sorted(CONTEXT_WINDOWS))
            raise InvalidArgumentError(
                f"unknown model {name!r}: pass context_window= (known prefixes: {known})"
            )
        context_window = CONTEXT_WINDOWS[max(matches, key=len)]
    if context_window < MIN_BUDGET:
        raise InvalidArgumentError(f"context_window must be at least {MIN_BUDGET} tokens")
    budget = int(context_window * share)
    return ModelProfile(
        model=name,
        context_window=context_window,
        budget_tokens=max(MIN_BUDGET, min(MAX_DERIVED_BUDGET, budget)),
    )
