"""The one progress report of the command line, on stderr.

On a terminal it redraws one line in place (at most ten times a second); elsewhere it is
silent unless asked for, and then writes one line every few seconds. A phase with a known
total draws a bar; one without counts (and shows a rate when it has a unit).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """Call it as ``progress(phase, done, total)`` (``total`` 0 = unknown); ``counter``
    adapts it to callbacks that report increments."""

    def __init__(self, enabled: bool) -> None:
        self._tty = sys.stderr.isatty()
        self._enabled = enabled or self._tty
        self._phase = ""
        self._unit = ""
        self._counting = ""
        self._last = 0.0
        self._started = time.monotonic()
        self._done = 0
        self._total = 0
        self._drawn = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if phase != self._phase:
            self._started = now
        finished = total > 0 and done >= total
        self._done, self._total = done, total
        if (phase == self._phase and not finished
                and now - self._last < (0.1 if self._tty else 5.0)):
            return
        if phase != self._phase and self._drawn and self._tty:
            sys.stderr.write("\n")
        self._phase, self._last = phase, now
        self._draw()

    def counter(self, phase: str, unit: str) -> Callable[[int], None]:
        """A callback that adds its argument to a running count shown as
        ``phase: N unit (R/s)``."""
        self._unit, self._counting = unit, phase
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            self(phase, done, 0)

        return advance

    def _draw(self) -> None:
        done, total, phase = self._done, self._total, self._phase
        if total > 0:
            share = min(done / total, 1.0)
            bar = "#" * int(share * 30)
            text = f"{phase}: [{bar:<30}] {share:4.0%} ({done}/{total})"
        elif self._unit:
            elapsed = max(time.monotonic() - self._started, 1e-9)
            text = f"{phase}: {done} {self._unit} ({done / elapsed:.0f}/s)"
        else:
            text = f"{phase}: {done}" if done else f"{phase}…"
        sys.stderr.write(("\r" + text) if self._tty else (text + "\n"))
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        """End the current line (idempotent); a counter ends with its final figure."""
        if self._enabled:
            if self._counting:
                if self._tty and self._drawn:
                    sys.stderr.write("\r")
                self._phase = self._counting
                self._draw()
            if self._drawn and self._tty:
                sys.stderr.write("\n")
            sys.stderr.flush()
        self._drawn = False
        self._phase = self._unit = self._counting = ""
