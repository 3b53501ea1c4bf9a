"""The token file under concurrent writers in separate processes: nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mcp_checkpoint.server.bearer import TokenFile

pytestmark = pytest.mark.e2e

_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mcp_checkpoint.server.bearer import TokenFile

    data, start, ids = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
    while not start.exists():  # every worker starts writing at the same moment
        time.sleep(0.001)
    tokens = TokenFile(data)
    for token_id in ids:
        tokens.revoke(token_id)
        _, record = tokens.create("acme", ["read"], name="storm")
        print(record.token_id, flush=True)
""")


def test_concurrent_create_and_revoke_from_processes_lose_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tokens = TokenFile(data)
    workers, per_worker = 4, 15
    seeded = [tokens.create("acme", ["read"])[1].token_id for _ in range(workers * per_worker)]
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(data), str(start),
             ",".join(seeded[w * per_worker:(w + 1) * per_worker])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(workers)
    ]
    start.touch()
    created: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        created += out.split()
    records = {r.token_id: r for r in TokenFile(data).records()}
    assert len(created) == workers * per_worker
    # Every revocation stuck, and every created token is in the file and live.
    assert [t for t in seeded if records[t].revoked_at is None] == []
    assert [t for t in created if t not in records or records[t].revoked_at is not None] == []
    assert len(records) == 2 * workers * per_worker
