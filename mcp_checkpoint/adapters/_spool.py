"""The hook spool: events a hook process hands over, applied to the store by a drainer.

A hook runs once per tool call, so its process must start and exit fast: it appends the
event (already redacted) as one JSON line to ``<data_dir>/hooks/spool.jsonl`` under an
exclusive lock, fsyncs it, starts a detached drainer and exits. The drainer (one at a
time, serialised by ``drain.lock``) renames the spool aside, applies its events in order
through the core services and deletes it; a drainer that dies leaves the renamed file for
the next one, and idempotency keys make a replay write nothing twice.

Stdlib only: importing this module must stay cheap (the hook's fast path).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # not typing's: a hook process imports as little as it can
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["FileLock", "HookLog", "Spool", "data_dir_from_env"]

_LOG_MAX_BYTES = 512 * 1024


def data_dir_from_env(environ: dict[str, str] | None = None) -> Path:
    """The data directory exactly as ``Settings.data_dir`` resolves it, without importing
    pydantic: ``MCP_CHECKPOINT_DATA_DIR``, else the per-platform user data directory.
    (``tests/unit/test_adapters.py`` keeps the two in step.)"""
    env = os.environ if environ is None else environ
    raw = env.get("MCP_CHECKPOINT_DATA_DIR")
    if raw:
        return Path(raw)
    if sys.platform == "linux" and environ is None:
        # What platformdirs answers on Linux, in its two plain cases (importing it costs
        # the per-tool-call process about as much CPU as the rest of its imports).
        xdg = env.get("XDG_DATA_HOME", "")
        if xdg.startswith("/"):
            return Path(os.path.join(xdg, "mcp-checkpoint"))
        if env.get("HOME", "").startswith("/"):
            return Path(os.path.join(os.path.expanduser("~/.local/share"), "mcp-checkpoint"))
    import platformdirs

    return Path(platformdirs.user_data_dir("mcp-checkpoint", appauthor=False))


@contextlib.contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


class FileLock:
    """An exclusive ``flock`` on a file, taken and let go by hand (a drainer passes from
    one lock to the other, which a ``with`` block cannot express)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; False when ``blocking`` is off and another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go (closing the file releases the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Spool:
    """The spool of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "hooks"
        self.file = self.dir / "spool.jsonl"
        self._append_lock = self.dir / "spool.lock"
        self.drain_lock = self.dir / "drain.lock"
        self.drain_wait = self.dir / "drain.wait"

    def _ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def append(self, record: dict[str, Any]) -> None:
        """Append one event durably (fsync'd before this returns)."""
        self._ensure()
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with _locked(self._append_lock):
            fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)

    def pending(self) -> bool:
        """True when events wait to be applied (call with the drain lock held)."""
        if self.file.exists() and self.file.stat().st_size > 0:
            return True
        return any(self.dir.glob("draining-*.jsonl"))

    def take(self) -> list[Path]:
        """Move the spool aside and return every file to apply, oldest first (call with
        the drain lock held; leftovers of a drainer that died come first)."""
        self._ensure()
        with _locked(self._append_lock):
            if self.file.exists() and self.file.stat().st_size > 0:
                os.replace(self.file, self.dir / f"draining-{time.time_ns():020d}.jsonl")
        return sorted(self.dir.glob("draining-*.jsonl"))

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any] | None]:
        """The events of a taken file; None for a line that is not a JSON object (a torn
        write of a process that was killed)."""
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    record = json.loads(raw)
                except ValueError:
                    yield None
                    continue
                yield record if isinstance(record, dict) else None

    def drainer_waiting(self) -> bool:
        """True when a drainer waits for the drain lock (it holds ``drain.wait``): it has
        not taken the spool yet, so it will apply what was appended before this call and
        no other drainer is needed. (Holding ``drain.wait`` for this probe can make a
        drainer that starts meanwhile give up; the caller, having got it, starts one.)"""
        with _locked(self.drain_wait, blocking=False) as free:
            return not free

    def spawn_drainer(self, argv: list[str]) -> None:
        """Start ``argv`` (the drainer command) detached: its own session, no terminal,
        stdio on /dev/null, so the hook returns at once and the client waits for nothing;
        nothing is started when a drainer already waits (:meth:`drainer_waiting`)."""
        if self.drainer_waiting():
            return
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)


class HookLog:
    """Problems of hook processes, one line each, in ``<data_dir>/hooks/hooks.log``
    (kept small: the previous half-megabyte moves to ``hooks.log.1``); ``doctor`` shows
    the last ones."""

    def __init__(self, data_dir: Path) -> None:
        self.file = data_dir / "hooks" / "hooks.log"

    def write(self, event: str, message: str) -> None:
        """Append a line; never raises."""
        with contextlib.suppress(OSError):
            self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.file.exists() and self.file.stat().st_size > _LOG_MAX_BYTES:
                os.replace(self.file, self.file.with_name("hooks.log.1"))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            text = " ".join(message.split())[:2000]
            with self.file.open("a", encoding="utf-8") as fh:
                fh.write(f"{stamp} {event or '-'} {text}\n")

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines, oldest first."""
        try:
            lines = self.file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return lines[-n:]
