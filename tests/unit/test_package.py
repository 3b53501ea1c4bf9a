"""Package-level contracts: layering, shipped schemas, prompts, settings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from mcp_checkpoint import _schemas
from mcp_checkpoint._assets import asset_dir
from mcp_checkpoint.config import Settings
from mcp_checkpoint.server.prompts import load_prompt

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mcp_checkpoint"
DRIVERS = {"mcp", "mcp_types", "sqlite3", "psycopg", "psycopg_pool", "qdrant_client",
           "sentence_transformers", "torch"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", ["core", "storage", "embeddings", "packs"])
def test_layers_below_the_server_never_import_the_mcp_sdk(layer: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path)
                                            if m.split(".")[0] in {"mcp", "mcp_types"}
                                            or m.startswith("mcp_checkpoint.server"))
        for path in (PACKAGE / layer).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_imports_no_driver_and_no_backend() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imports(path)
            if m.split(".")[0] in DRIVERS or m.startswith(("mcp_checkpoint.storage",
                                                            "mcp_checkpoint.embeddings",
                                                            "mcp_checkpoint.packs"))
        )
        for path in (PACKAGE / "core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _module_imports(path: Path) -> set[str]:
    """What a module imports when it is loaded or type-checked: its top-level imports,
    those under ``if TYPE_CHECKING:`` and ``try:`` included, not those inside functions
    (which are lazy on purpose)."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_no_import_circle_in_the_package_not_even_a_type_only_one() -> None:
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        name: {m for m in map(owner, _module_imports(path)) if m is not None and m != name}
        for name, path in modules.items()
    }
    circles: list[list[str]] = []
    done: set[str] = set()
    for start in sorted(graph):  # a circle through ``start`` is a path back to it
        stack, seen = [(start, [start])], {start}
        while stack:
            name, trail = stack.pop()
            for nxt in sorted(graph[name]):
                if nxt == start:
                    circles.append(trail)
                elif nxt not in seen and nxt not in done:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        done.add(start)
    assert circles[:3] == []


@pytest.mark.parametrize("name", list(_schemas.MODELS))
def test_shipped_schemas_match_the_models(name: str) -> None:
    shipped = (asset_dir("resources") / "schemas" / f"{name}.json").read_text(encoding="utf-8")
    assert shipped == _schemas.render(name), "run: python -m mcp_checkpoint._schemas"
    assert json.loads(shipped)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    "name", ["resume_run", "checkpoint_now", "review_memory_batch", "agent_protocol"]
)
def test_prompt_files_parse_and_use_known_placeholders(name: str) -> None:
    prompt = load_prompt(name)
    assert prompt.description and prompt.title
    assert prompt.body.get_identifiers()  # every template fills in live state


def test_settings_read_nested_environment_variables(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES", "4096")
    monkeypatch.setenv("MCP_CHECKPOINT_CHECKPOINT__TRIGGER_STEPS", "7")
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.limits.max_step_bytes == 4096 and settings.checkpoint.trigger_steps == 7
    assert settings.sqlite_path == tmp_path / "mcp-checkpoint.db"


def test_settings_reject_inconsistent_values(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="default_budget_tokens"):
        Settings(data_dir=tmp_path, rehydrate={"default_budget_tokens": 999_999_999})
    with pytest.raises(ValueError, match="store_url must start with"):
        Settings(data_dir=tmp_path, store_url="mysql://x")


def _env_names() -> list[str]:
    from pydantic import BaseModel

    names = []
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names += [f"MCP_CHECKPOINT_{name.upper()}__{sub.upper()}" for sub in ann.model_fields]
        else:
            names.append(f"MCP_CHECKPOINT_{name.upper()}")
    return names


def test_configuration_docs_document_every_setting() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert [n for n in _env_names() if f"`{n}`" not in reference] == []


def test_readme_links_only_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert targets, "the README links to its docs"
    assert [t for t in targets if not (ROOT / t).exists()] == []


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = '.venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest'
    assert f"```bash\n{command}\n```" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert any(line.strip() == command for line in ci.splitlines())


def test_the_distribution_name_license_and_install_hints_agree_with_pyproject() -> None:
    import tomllib

    from mcp_checkpoint._dist import DISTRIBUTION, install_hint

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION != "mcp-checkpoint"  # that name is another project
    assert f'pip install "{DISTRIBUTION}[embeddings]"' in install_hint("embeddings")
    assert 'pip install -e ".[embeddings]"' in install_hint("embeddings")
    assert set(project["optional-dependencies"]) >= {"embeddings", "postgres", "qdrant"}
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_the_product_never_imports_the_benchmarks() -> None:
    # bench/ lives in the checkout only; cli/bench.py reaches it by name, at run time.
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if m.split(".")[0] == "bench")
        for path in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert not (PACKAGE / "bench").exists()
