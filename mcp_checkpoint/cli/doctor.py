"""``mcp-checkpoint doctor``: check the configuration, the data directory and the store."""

from __future__ import annotations

import argparse
import importlib.util
import json
from typing import TYPE_CHECKING, Any

from mcp_checkpoint.cli._common import out, with_store

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings
    from mcp_checkpoint.core.ports import Store

__all__ = ["register"]

EXTRAS = {"embeddings": "sentence_transformers", "postgres": "psycopg", "qdrant": "qdrant_client"}


def _installed(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    if importlib.util.find_spec(module) is None:
        return None
    dist = {"sentence_transformers": "sentence-transformers", "qdrant_client": "qdrant-client"}
    try:
        return version(dist.get(module, module))
    except PackageNotFoundError:
        return "installed"


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    """Check the configuration, the data directory and the store."""
    import platform

    from mcp_checkpoint import __version__
    from mcp_checkpoint.core.models import Tenant
    from mcp_checkpoint.core.tokens import HeuristicTokenizer
    from mcp_checkpoint.embeddings import embeddings_status, make_embedder
    from mcp_checkpoint.errors import CheckpointError
    from mcp_checkpoint.storage._urls import mask_url

    report: dict[str, Any] = {
        "version": __version__,
        "python": platform.python_version(),
        "mcp": _installed("mcp"),
        "data_dir": str(settings.data_dir),
        "store": mask_url(settings.store_url or f"sqlite:///{settings.sqlite_path}"),
        "tenant": settings.tenant,
        "tokenizer": HeuristicTokenizer().name,
        "extras": {name: _installed(mod) for name, mod in EXTRAS.items()},
        "embeddings": embeddings_status(settings),
        "vectors": settings.vectors.backend,
    }
    problems: list[str] = []
    try:
        make_embedder(settings)  # cheap: nothing loads until start()
    except CheckpointError as exc:  # the extra was asked for but is missing
        problems.append(str(exc))

    async def body(store: Store) -> None:
        schema = getattr(store, "schema_version", None)
        if schema is not None:
            report["schema_version"] = await schema()
        describe = getattr(store, "describe", None)
        if describe is not None:
            report["backend"] = await describe()
        integrity = getattr(store, "integrity_check", None)
        if integrity is not None:
            report["integrity"] = await integrity()
            if report["integrity"] != "ok":
                problems.append(f"integrity check: {report['integrity']}")
        report["runs"] = len(await store.list_runs(
            Tenant(settings.tenant), status=None, limit=1000, offset=0
        ))

    try:
        with_store(settings, body)
        report["store_status"] = "ok"
    except CheckpointError as exc:
        report["store_status"] = str(exc)
        problems.append(str(exc))
    except OSError as exc:
        report["store_status"] = f"cannot use the data directory: {exc.strerror}"
        problems.append(report["store_status"])
    from mcp_checkpoint.adapters._spool import HookLog, Spool

    # Client hooks never fail a session; what went wrong in them is shown here.
    report["hook_spool"] = "pending" if Spool(settings.data_dir).pending() else "empty"
    report["hook_log"] = HookLog(settings.data_dir).tail(5)
    report["problems"] = problems
    if args.json:
        out(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            if key == "extras":
                shown = ", ".join(f"{k}: {v or 'not installed'}" for k, v in value.items())
                out(f"{'extras':<15} {shown}")
            elif key == "backend":
                for name, detail in value.items():
                    if isinstance(detail, dict):
                        detail = ", ".join(f"{k}={v}" for k, v in detail.items())
                    out(f"{name:<15} {detail}")
            elif key == "hook_log":
                shown = "last problems of client hooks:" if value else "empty"
                out(f"{'hook_log':<15} {shown}")
                for line in value:
                    out(f"  {line}")
            elif key != "problems":
                out(f"{key:<15} {value}")
        out("doctor: " + ("ok" if not problems else "PROBLEMS: " + "; ".join(problems)))
    return 0 if not problems else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``doctor``."""
    doctor = sub.add_parser("doctor", help="check configuration, data dir and store")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(func=cmd_doctor)
