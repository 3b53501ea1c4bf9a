"""The wheel ships the product only (no benchmarks, no tests), with resources/ and
prompts/, and serves them when installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROBE = textwrap.dedent(
    """
    import json, sys, anyio
    from mcp import Client, StdioServerParameters
    import mcp_checkpoint

    async def main():
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "mcp_checkpoint", "serve"],
            env={"MCP_CHECKPOINT_DATA_DIR": sys.argv[1]},
        )
        async with Client(params) as client:
            schema = await client.read_resource("schema://checkpoint")
            guide = await client.read_resource("guide://protocol")
            prompt = await client.get_prompt("agent_protocol", {})
            tools = [tool.name for tool in (await client.list_tools()).tools]
        print(json.dumps({
            "package": mcp_checkpoint.__file__,
            "schema": json.loads(schema.contents[0].text)["$id"],
            "guide": guide.contents[0].text.splitlines()[0],
            "prompt": prompt.messages[0].content.text[:40],
            "tools": tools,
        }))

    anyio.run(main)
    """
)


def test_installed_wheel_serves_schemas_and_prompts(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )
    wheels = list(dist.glob("mcp_checkpoint_server-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"mcp_checkpoint"}
    assert [name for name in names if "/bench/" in name] == []
    assert [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheels[0])],
        check=True, capture_output=True, timeout=600,
    )
    data_dir = tmp_path / "data"
    # Run from an empty folder so that nothing resolves against the source checkout.
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    out = subprocess.run(
        [str(python), "-c", PROBE, str(data_dir)],
        check=True, capture_output=True, text=True, timeout=120, cwd=probe_dir,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(env_dir) in seen["package"]
    assert seen["schema"] == "schema://checkpoint"
    assert seen["guide"].startswith("# mcp-checkpoint")
    assert seen["prompt"].startswith("Follow this protocol")
    assert "record_step" in seen["tools"] and "noop" not in seen["tools"]
