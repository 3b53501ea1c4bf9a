"""Secret redaction: what a step carries is scrubbed of credentials before it is stored.

``Redactor`` replaces common secret formats — provider API keys, bearer tokens, private
key blocks, AWS keys, JWTs, credentials in URLs, and ``password=`` / ``"secret": ...``
style assignments — with ``[REDACTED:<kind>]``. It is applied by ``Episodes.record_step``,
so every path that records a step (MCP tools, client hooks, the Python API) stores the
same scrubbed text; settings add patterns. Redacting redacted text changes nothing.

This module imports only ``re``: the client hook's fast path uses it too.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # not typing's: the hook's fast path imports this module
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["DEFAULT_PATTERNS", "Redactor", "redact_text"]

_MARK = "[REDACTED:{}]"

# (kind, pattern, group that holds the secret — 0 for the whole match)
DEFAULT_PATTERNS: tuple[tuple[str, str, int], ...] = (
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        0,
    ),
    ("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", 0),
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", 0),
    ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}", 0),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})", 0),
    ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}", 0),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}", 0),
    ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}", 0),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}", 0),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0),
    ("bearer_token", r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{12,}=*)", 1),
    ("basic_auth", r"(?i)\bauthorization\s*[:=]\s*[\"']?basic\s+([A-Za-z0-9+/]{8,}=*)", 1),
    ("url_credentials", r"\b[a-z][a-z0-9+.-]*://[^\s:/@\"']+:([^\s@/\"']+)@", 1),
    (
        "cli_flag",
        r"(?i)(?:^|(?<=\s))--?(?:passw(?:or)?d|token|secret|api-?key|access-token|auth-token)"
        r"(?:=|[ \t]+)[\"']?([^\s\"']{4,})",
        1,
    ),
    (
        "assignment",
        # password=..., DB_PASSWORD: "...", "api_key": "...", --token xyz, secret => '...'
        r"(?i)(?:^|(?<=[\s{,;(\"'`&?]))-{0,2}[\"']?"
        r"[A-Za-z0-9_.-]*(?:passw(?:or)?d|pwd|secret|api[_-]?key|apikey|access[_-]?key|"
        r"private[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|token|"
        r"credentials?)[\"']?"
        # on the same line: "Password:" at the end of a line is a prompt, not a value
        r"(?:[ \t]*(?:=>|[:=])[ \t]*|[ \t]+(?=[\"']))[\"']?"
        # not a type annotation (password: str, token: Optional[str])
        r"(?!(?:str|int|bool|bytes|float|None|Optional|Secret\w*|Any|typing)\b)"
        r"([^\s\"',;}\]]{4,})",
        1,
    ),
)

# Literal text each built-in pattern cannot match without (checked on the lowercased text):
# a pattern whose needles are all absent is not run. Most step outputs hold no secret, and
# one substring search costs far less than a regex scan.
_NEEDLES: dict[str, tuple[str, ...]] = {
    "private_key": ("private key",),
    "aws_access_key": ("akia", "asia", "abia", "acca"),
    "anthropic_key": ("sk-ant-",),
    "openai_key": ("sk-",),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab_token": ("glpat-",),
    "slack_token": ("xox",),
    "google_api_key": ("aiza",),
    "stripe_key": ("_live_", "_test_"),
    "huggingface_token": ("hf_",),
    "jwt": ("eyj",),
    "bearer_token": ("bearer",),
    "basic_auth": ("authorization",),
    "url_credentials": ("@",),
    "cli_flag": ("passw", "token", "secret", "api"),
    "assignment": ("passw", "pwd", "secret", "api", "access", "private", "token", "credential"),
}

_ALL_NEEDLES = tuple(sorted({n for needles in _NEEDLES.values() for n in needles}))

# The built-in patterns that can match across a line break. Every other built-in one (those
# with needles) matches within a line (nothing in it matches "\n"; at a line's start "^"
# stands where the text has "\n", which is whitespace and no word character), so it runs on
# the lines that hold one of its needles alone, with the same matches as over the whole text.
# Patterns from the settings have no needles and run over the whole text.
_SPANS_LINES = frozenset({"private_key", "bearer_token", "basic_auth"})


def _present(text: str) -> set[str]:
    """The needles that occur in ``text``, case-insensitively."""
    lowered = text.lower()
    return {n for n in _ALL_NEEDLES if n in lowered}


# A JSON key that names a secret: its string value is redacted whatever it looks like.
_SECRET_KEY = re.compile(
    r"(?i)^[A-Za-z0-9_.-]*(?:passw(?:or)?d|pwd|secret|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|token|"
    r"credentials?|authorization)$"
)


class Redactor:
    """Replaces secrets in text and JSON values; the built-in patterns plus ``extra``."""

    def __init__(self, extra: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        # A built-in pattern is compiled the first time a text holds one of its needles
        # (most texts hold none; the hook process redacts one event and exits).
        self._patterns: list[tuple[str, str, int, frozenset[str]]] = [
            (kind, p, g, frozenset(_NEEDLES.get(kind, ()))) for kind, p, g in DEFAULT_PATTERNS
        ]
        self._compiled: dict[str, re.Pattern[str]] = {}
        for n, p in enumerate(extra):
            kind = f"custom#{n}"
            self._patterns.append((kind, p, 0, frozenset()))
            self._compiled[kind] = re.compile(p)  # a bad setting fails here, not later

    def text(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED:<kind>]``."""
        if not self.enabled or not text:
            return text
        # Each distinct needle is looked for once (not once per pattern that names it).
        present = _present(text)
        for kind, source, group, needles in self._patterns:
            if needles and present.isdisjoint(needles):
                continue  # cannot match: none of its literal parts is there
            pattern = self._compiled.get(kind)
            if pattern is None:
                pattern = self._compiled[kind] = re.compile(source)
            replace = _replacer(kind.partition("#")[0], group)
            if needles and kind not in _SPANS_LINES and "\n" in text:
                redacted = _sub_lines(pattern, replace, text, needles & present)
            else:
                redacted = pattern.sub(replace, text)
            if redacted is not text:
                text, present = redacted, _present(redacted)
        return text

    def json(self, value: Any) -> Any:
        """A copy of a JSON value with its strings redacted; a string under a key that
        names a secret (``password``, ``api_key``, ``token``...) is redacted whole."""
        if not self.enabled:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, v in value.items():
                if isinstance(v, str) and v and _SECRET_KEY.match(str(key)) and not (
                    v.startswith("[REDACTED")
                ):
                    out[key] = _MARK.format("assignment")
                else:
                    out[key] = self.json(v)
            return out
        return value


def _sub_lines(pattern: re.Pattern[str], replace: Any, text: str, needles: Iterable[str]
               ) -> str:
    """``pattern.sub(replace, text)`` for a pattern that matches within a line and cannot
    match without one of ``needles`` (lower case): run on the lines holding one of them.
    ``text`` itself when nothing changed."""
    lowered = text.lower()
    if len(lowered) != len(text):  # lower-casing moved the offsets (a few Unicode letters)
        redacted = pattern.sub(replace, text)
        return text if redacted == text else redacted
    starts: set[int] = set()
    for needle in needles:
        at = lowered.find(needle)
        while at != -1:
            start = text.rfind("\n", 0, at) + 1
            starts.add(start)
            end = text.find("\n", at)
            if end == -1:
                break
            at = lowered.find(needle, end)
    parts: list[str] = []
    done = 0
    for start in sorted(starts):
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
        line = text[start:end]
        redacted = pattern.sub(replace, line)
        if redacted != line:
            parts += [text[done:start], redacted]
            done = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _replacer(kind: str, group: int) -> Any:
    mark = _MARK.format(kind)

    def replace(match: re.Match[str]) -> str:
        if group == 0:
            return mark
        secret = match.group(group)
        if secret.startswith("[REDACTED"):
            return match.group(0)
        start, end = match.span(group)
        base = match.start(0)
        whole = match.group(0)
        return whole[: start - base] + mark + whole[end - base :]

    return replace


_DEFAULT = Redactor()


def redact_text(text: str) -> str:
    """``text`` redacted with the built-in patterns only."""
    return _DEFAULT.text(text)
