"""A forgotten memory in the web view: its page says it was forgotten (410), and the memory
it had superseded says where its chain went, for the tenant that forgot it only."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.models import Tenant
from mcp_checkpoint.server.app import Runtime
from mcp_checkpoint.ui import UiCaller, standalone_app
from tests.ui._seed import seed

TOKENS = {
    "local": UiCaller("local", frozenset({"read", "write"})),
    "other": UiCaller("other", frozenset({"read", "write"})),
}


async def verify(token: str) -> UiCaller | None:
    return TOKENS.get(token)


def test_ui_says_a_forgotten_memory_was_forgotten(tmp_path: Path) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path))
    with TestClient(standalone_app(runtime.services, runtime.use, verify=verify)) as client:
        seeded = client.portal.call(seed, runtime.services)
        mine = {"Authorization": "Bearer local"}
        before = client.get(f"/ui/memories/{seeded.superseded_id}", headers=mine)
        assert before.status_code == 200 and "was forgotten" not in before.text

        client.portal.call(runtime.services.memory.forget, Tenant("local"), seeded.memory_id)

        gone = client.get(f"/ui/memories/{seeded.memory_id}", headers=mine)
        assert gone.status_code == 410
        assert f"memory {seeded.memory_id} was forgotten on" in gone.text
        old = client.get(f"/ui/memories/{seeded.superseded_id}", headers=mine)
        assert old.status_code == 200
        assert 'id="forgotten"' in old.text
        assert f"Superseded by {seeded.memory_id}, which was forgotten on" in old.text
        other = client.get(f"/ui/memories/{seeded.memory_id}",
                           headers={"Authorization": "Bearer other"})
        assert other.status_code == 404 and "forgotten" not in other.text
