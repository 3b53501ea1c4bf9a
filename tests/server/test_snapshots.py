"""Workspace snapshots through MCP: checkpoint(files=...), the snapshot:// and blob://
resources, and files read by path from the client's roots (never outside them)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp_types import ListRootsResult, Root

from tests.server.conftest import call, call_error, record, start_run

pytestmark = pytest.mark.anyio


async def read_json(client: Client, uri: str) -> Any:
    return json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]


async def test_checkpoint_keeps_files_and_serves_them_as_resources(client: Client) -> None:
    await start_run(client)
    await record(client)
    binary = bytes(range(256))
    done = await call(client, "checkpoint", {
        "run_id": "r1", "name": "tests green", "stage": "fix", "notes": "before the refactor",
        "files": [
            {"path": "src/app.py", "content": "print('hello')\n"},
            {"path": "assets/logo.bin", "content_base64": base64.b64encode(binary).decode()},
        ],
    })
    snapshot = done["content"]["snapshot"]
    assert (snapshot["files"], snapshot["bytes"], snapshot["new_blobs"]) == (2, 15 + 256, 2)
    assert (done["content"]["name"], done["content"]["stage"]) == ("tests green", "fix")
    listed = await read_json(client, f"snapshot://r1/{done['checkpoint_id']}")
    assert listed == await read_json(client, "snapshot://r1/latest")
    assert listed["name"] == "tests green" and listed["notes"] == "before the refactor"
    by_path = {f["path"]: f for f in listed["files"]}
    assert by_path["assets/logo.bin"]["sha256"] == hashlib.sha256(binary).hexdigest()
    blob = (await client.read_resource(by_path["assets/logo.bin"]["uri"])).contents[0]
    assert base64.b64decode(blob.blob) == binary  # type: ignore[union-attr]

    # The next checkpoint keeps only what changed, and does not inherit the name.
    again = await call(client, "checkpoint", {"run_id": "r1", "progress": ["more"], "files": [
        {"path": "src/app.py", "content": "print('hello')\n"},
        {"path": "assets/logo.bin", "content_base64": base64.b64encode(binary[::-1]).decode()},
    ]})
    assert again["content"]["snapshot"]["new_blobs"] == 1
    assert again["content"]["name"] is None
    # A checkpoint without files keeps none; latest still finds the newest that did.
    plain = await call(client, "checkpoint", {"run_id": "r1", "progress": ["even more"]})
    assert plain["content"]["snapshot"] is None
    assert (await read_json(client, "snapshot://r1/latest"))["checkpoint_id"] == \
        again["checkpoint_id"]


@pytest.mark.parametrize(("item", "problem"), [
    pytest.param({"path": "../etc/passwd", "content": "x"}, "files.0.path", id="dotdot"),
    pytest.param({"path": "/etc/passwd", "content": "x"}, "absolute", id="absolute"),
    pytest.param({"path": "a", "content": "x", "content_base64": "eA=="}, "not both", id="both"),
    pytest.param({"path": "a", "content_base64": "%%%"}, "not base64", id="bad-base64"),
    pytest.param({"path": "a"}, "shares none", id="path-without-roots"),
])
async def test_bad_files_are_refused_naming_the_item(
    client: Client, item: dict[str, str], problem: str
) -> None:
    await start_run(client)
    text = await call_error(client, "checkpoint", {"run_id": "r1", "files": [item]})
    assert text.startswith("invalid_argument:") and problem in text
    listed = await client.read_resource("run://r1")
    assert json.loads(listed.contents[0].text)["latest_checkpoint_id"] is None  # type: ignore[union-attr]


async def test_files_by_path_are_read_from_inside_the_client_roots_only(
    server: MCPServer[Any], tmp_path: Path
) -> None:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.py").write_text("x = 1\n", encoding="utf-8")
    outside = tmp_path / "secret.txt"
    outside.write_text("do not read", encoding="utf-8")
    (root / "leak.txt").symlink_to(outside)

    async def roots(_: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=root.as_uri(), name="project")])

    async with Client(server, mode="legacy", list_roots_callback=roots) as client:
        await start_run(client)
        done = await call(client, "checkpoint", {"run_id": "r1",
                                                 "files": [{"path": "src/main.py"}]})
        assert done["content"]["snapshot"]["files"] == 1
        leak = await call_error(client, "checkpoint", {"run_id": "r1",
                                                       "files": [{"path": "leak.txt"}]})
        assert "outside the client's roots" in leak
        missing = await call_error(client, "checkpoint", {"run_id": "r1",
                                                          "files": [{"path": "nope.py"}]})
        assert "in none of the client's roots" in missing


async def test_unknown_snapshots_and_blobs_are_not_found(client: Client) -> None:
    await start_run(client)
    await call(client, "checkpoint", {"run_id": "r1", "progress": ["no files"]})
    for uri in ("snapshot://r1/latest", "blob://" + "0" * 64):
        with pytest.raises(Exception, match="not_found"):
            await client.read_resource(uri)
    with pytest.raises(Exception, match="64 lowercase hex"):
        await client.read_resource("blob://not-a-hash")
