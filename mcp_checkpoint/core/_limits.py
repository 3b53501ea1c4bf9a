"""Argument checks shared by the core services: each error names the field and the limit."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcp_checkpoint.config import LimitSettings
from mcp_checkpoint.errors import InvalidArgumentError, PayloadTooLargeError

# fullmatch, not match with "$": "$" also matches before a final newline ("run\n").
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


class Limits:
    """Checks against one LimitSettings."""

    def __init__(self, settings: LimitSettings) -> None:
        self.s = settings

    def ident(self, field: str, value: str) -> str:
        """A caller-chosen id: letters, digits and . _ : - , bounded length."""
        if not value:
            raise InvalidArgumentError(f"{field} must not be empty")
        if len(value) > self.s.max_id_chars:
            raise PayloadTooLargeError(
                f"{field} has {len(value)} characters; limits.max_id_chars is "
                f"{self.s.max_id_chars}"
            )
        if not _ID.fullmatch(value):
            raise InvalidArgumentError(
                f"{field} may hold only letters, digits and . _ : - (and must start with a "
                "letter or digit)"
            )
        return value

    def text(self, field: str, value: str, *, required: bool = False) -> str:
        """A text field within limits.max_text_chars (non-blank when required)."""
        if required and not value.strip():
            raise InvalidArgumentError(f"{field} must not be empty")
        if len(value) > self.s.max_text_chars:
            raise PayloadTooLargeError(
                f"{field} has {len(value)} characters; limits.max_text_chars is "
                f"{self.s.max_text_chars}"
            )
        if "\x00" in value:
            raise InvalidArgumentError(f"{field} must not contain NUL characters")
        return value

    def texts(self, field: str, values: Sequence[str] | None) -> list[str]:
        """A list of text items within limits.max_list_items and max_text_chars each."""
        if values is None:
            return []
        if len(values) > self.s.max_list_items:
            raise PayloadTooLargeError(
                f"{field} has {len(values)} items; limits.max_list_items is "
                f"{self.s.max_list_items}"
            )
        return [self.text(f"{field}[{i}]", v) for i, v in enumerate(values)]

    def query(self, field: str, value: str) -> str:
        """A search query: a text within limits.max_query_chars."""
        if len(value) > self.s.max_query_chars:
            raise PayloadTooLargeError(
                f"{field} has {len(value)} characters; limits.max_query_chars is "
                f"{self.s.max_query_chars}"
            )
        return self.text(field, value)

    def count(self, field: str, value: int, setting: str) -> int:
        """A count asked for (``k``...) within [1, the ``limits.<setting>`` maximum]."""
        hi = getattr(self.s, setting)
        if value < 1:
            raise InvalidArgumentError(f"{field} is {value}; it must be at least 1")
        if value > hi:
            raise PayloadTooLargeError(f"{field} is {value}; limits.{setting} is {hi}")
        return value

    def size(self, field: str, nbytes: int, limit: int, setting: str) -> None:
        """A serialized payload within a byte limit."""
        if nbytes > limit:
            raise PayloadTooLargeError(
                f"{field} is {nbytes} bytes; {setting} is {limit}"
            )

    def nesting(self, field: str, value: object, text: str | None = None) -> None:
        """A JSON value nested at most limits.max_json_depth containers deep. ``text``, its
        JSON text if at hand, lets shallow values skip the walk: a value cannot be nested
        deeper than it has brackets."""
        limit = self.s.max_json_depth
        if text is not None and text.count("[") + text.count("{") <= limit:
            return
        stack: list[tuple[object, int]] = [(value, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, dict | list):
                depth += 1
                if depth > limit:
                    raise PayloadTooLargeError(
                        f"{field} is nested more than {limit} levels deep; "
                        f"limits.max_json_depth is {limit}"
                    )
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth) for child in children)

    def budget(self, field: str, value: int) -> int:
        """A token budget within [limits.min_budget_tokens, limits.max_budget_tokens]."""
        lo, hi = self.s.min_budget_tokens, self.s.max_budget_tokens
        if value < lo:
            raise InvalidArgumentError(
                f"{field} is {value}; it must be at least {lo} (limits.min_budget_tokens)"
            )
        if value > hi:
            raise PayloadTooLargeError(
                f"{field} is {value}; limits.max_budget_tokens is {hi}"
            )
        return value

    def page(self, field: str, value: int) -> int:
        """A page size within [1, limits.max_page_size]."""
        if value < 1:
            raise InvalidArgumentError(f"{field} must be at least 1")
        if value > self.s.max_page_size:
            raise PayloadTooLargeError(
                f"{field} is {value}; limits.max_page_size is {self.s.max_page_size}"
            )
        return value
