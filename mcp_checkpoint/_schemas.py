"""JSON Schemas (Draft 2020-12) of every persisted artifact, generated from the models.

``python -m mcp_checkpoint._schemas`` rewrites ``resources/schemas/``; a unit test fails
when the committed files and the models drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mcp_checkpoint.core.models import (
    Checkpoint,
    CheckpointContent,
    Context,
    Memory,
    Proposal,
    Run,
    Step,
)

MODELS: dict[str, type[BaseModel]] = {
    "run": Run,
    "step": Step,
    "checkpoint": Checkpoint,
    "checkpoint-content": CheckpointContent,
    "proposal": Proposal,
    "memory": Memory,
    "context": Context,
}


def schema(name: str) -> dict[str, Any]:
    """The schema of artifact ``name``."""
    body = MODELS[name].model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"schema://{name}",
        **body,
    }


def render(name: str) -> str:
    """The schema file's exact text."""
    return json.dumps(schema(name), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(out: Path) -> None:
    """Write every schema into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        (out / f"{name}.json").write_text(render(name), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("resources/schemas"))
