"""Stored text shown to people: control characters are made visible, never obeyed.

An objective, a step output or a memory is data written by an agent (or by whoever the
agent read). Printed raw, an ANSI escape could recolour a terminal, move the cursor, set
the window title or hide the lines after it; a carriage return could overwrite what a
line says. ``neutralise`` replaces every C0 and C1 control character (and DEL, and the
Unicode bidirectional overrides that reorder what a reader sees) with a visible escape
such as ``\\x1b``, keeping newlines and tabs only where the caller allows them. The CLI
and the web view both print stored text through it.
"""

from __future__ import annotations

import re

__all__ = ["neutralise", "one_line"]

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_NO_LINES = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str, *, lines: bool = True) -> str:
    """``text`` with control characters written as visible escapes (``\\x1b``).

    With ``lines`` (the default) newlines and tabs are kept; without, they are escaped
    too, so the result is one line."""
    return (_CONTROL if lines else _CONTROL_NO_LINES).sub(_visible, text)


def one_line(text: str, width: int | None = None) -> str:
    """``text`` neutralised on one line (newlines shown as spaces), cut to ``width``
    characters with an ellipsis when given."""
    flat = neutralise(text.replace("\r\n", " ").replace("\n", " ").replace("\t", " "),
                      lines=False)
    if width is not None and len(flat) > width:
        return flat[: max(width - 1, 0)] + "…"
    return flat
