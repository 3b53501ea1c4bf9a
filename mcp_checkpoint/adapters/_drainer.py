"""The detached drainer of the client hooks: it applies the spooled events (``_spool``) in
the background, one drainer at a time, and lingers a while for the next burst.

Only stdlib modules and ``_spool`` are imported at module level; anyio loads when there is
work. What applying an event means is the caller's (``claude_code.Applier``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mcp_checkpoint.adapters._spool import FileLock, HookLog, Spool

TYPE_CHECKING = False  # not typing's: a hook process imports as little as it can
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from typing import Any, Protocol

    class Applies(Protocol):
        """What applies one spooled record."""

        async def apply(self, record: dict[str, Any]) -> Any: ...

    OpenApplier = Callable[[Path], AbstractAsyncContextManager[Applies]]

__all__ = ["drain", "run"]

async def drain(spool: Spool, applier: Applies) -> int:
    """Apply every spooled record, oldest first (the caller holds the drain lock); returns
    how many were applied. A record that fails is logged and skipped: one bad event must
    not hold back the others."""
    log = HookLog(spool.dir.parent)
    applied = 0
    for path in spool.take():
        for record in Spool.read(path):
            if record is None:
                log.write("drain", f"{path.name}: a line that is not a JSON object was skipped")
                continue
            try:
                await applier.apply(record)
                applied += 1
            except Exception as exc:  # logged; the next records still apply
                log.write(str(record.get("event")), f"not recorded: {type(exc).__name__}: {exc}")
        path.unlink(missing_ok=True)
    return applied


def run(data_dir: Path, open_applier: OpenApplier) -> int:
    """The detached drainer: apply what is spooled (with the applier ``open_applier``
    gives, opened only once there is work), linger a while for more, then exit.

    Two locks order the drainers: ``drain.lock`` (held while applying) and ``drain.wait``
    (held by the one drainer that waits to apply; a hook that finds it held starts no
    other drainer, because that one has not taken the spool yet). A drainer lets go of
    ``drain.wait`` only once it holds ``drain.lock``, before it takes the spool. After
    draining it becomes the waiter again for up to ``_LINGER_S`` seconds (``drain.lock``
    let go, so SessionStart and PreCompact never wait for an idle drainer): the events of
    a busy session are applied by one process instead of one per burst, each of which
    would load the core and open the store again. On leaving it lets go of ``drain.wait``
    and looks at the spool once more, so an event a hook appended while it watched is
    never stranded."""
    spool = Spool(data_dir)
    log = HookLog(data_dir)
    waiting, draining = FileLock(spool.drain_wait), FileLock(spool.drain_lock)
    try:
        # Background work: the hooks the user waits for come first.
        os.nice(10)
        if not waiting.acquire(blocking=False):
            return 0
        draining.acquire()
        waiting.release()
        # Nothing to apply yet (an earlier drainer took it): wait for more without
        # loading anything.
        while not spool.pending():
            if not _become_waiter(waiting, draining):
                return 0
            idle_until = time.monotonic() + _LINGER_S
            while not spool.pending() and time.monotonic() < idle_until:
                time.sleep(_POLL_S)
            if not _resume(spool, waiting, draining):
                return 0
        import anyio

        anyio.run(_drain_all, spool, data_dir, open_applier, waiting, draining)
    except Exception as exc:  # a background process: log, never raise
        log.write("drain", f"{type(exc).__name__}: {exc}")
    finally:
        draining.release()
        waiting.release()
    return 0


_LINGER_S = 10.0
_POLL_S = 0.05


def _become_waiter(waiting: Any, draining: Any) -> bool:
    """Holding ``draining``: become the waiting drainer and let ``draining`` go; False
    (still holding ``draining``) when another drainer already waits."""
    if not waiting.acquire(blocking=False):
        return False
    draining.release()
    return True


def _resume(spool: Spool, waiting: Any, draining: Any) -> bool:
    """The waiting drainer, when the spool has events or it has waited long enough: True
    holding ``draining`` when there is work, False holding nothing when it should exit.
    On leaving it lets go of ``waiting`` and looks at the spool once more: a hook that saw
    it waiting started no other drainer."""
    if not spool.pending():
        waiting.release()
        if not spool.pending() or not waiting.acquire(blocking=False):
            return False
    draining.acquire()
    waiting.release()
    return True


async def _drain_all(spool: Spool, data_dir: Path, open_applier: OpenApplier, waiting: Any,
                     draining: Any) -> None:
    """Drain, wait for more, drain again... (called holding ``draining``)."""
    import anyio

    async with open_applier(data_dir) as applier:
        while True:
            while spool.pending():
                await drain(spool, applier)
            if not _become_waiter(waiting, draining):
                return  # another drainer waits: it applies what comes next
            idle_until = time.monotonic() + _LINGER_S
            # another process appends: polled
            while not spool.pending() and time.monotonic() < idle_until:  # noqa: ASYNC110
                await anyio.sleep(_POLL_S)
            if not _resume(spool, waiting, draining):
                return
