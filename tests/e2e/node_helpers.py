"""The Node clients the e2e tests run (the official MCP conformance suite, the TypeScript
SDK), pinned in ``tests/node/package-lock.json`` with their own Node (the ``node`` npm
package, which ships the binary), installed from the npm registry into
``tests/node/node_modules`` by ``.ci/run`` — or by the first test that needs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
MODULES = NODE_DIR / "node_modules"
NODE = MODULES / ".bin" / "node"
INSTALL_TIMEOUT = 600


def _pinned() -> dict[str, str]:
    declared: dict[str, str] = json.loads((NODE_DIR / "package.json").read_text())[
        "dependencies"
    ]
    return declared


def _installed() -> bool:
    """Every pinned package is in node_modules at its pinned version."""
    for name, version in _pinned().items():
        manifest = MODULES / name / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            return False
    return NODE.exists()


def node_clients() -> Path:
    """The pinned Node binary, installing the clients with ``npm ci`` when they are
    missing (npm registry only). Without npm: a skip locally, a failure under CI."""
    if _installed():
        return NODE
    npm = shutil.which("npm")
    if npm is None:
        reason = "npm is needed once to install the pinned Node clients (tests/node)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )
    if done.returncode != 0 or not _installed():
        pytest.fail(f"npm ci in tests/node failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return NODE

