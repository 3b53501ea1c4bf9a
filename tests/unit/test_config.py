"""How ``Settings`` reads the ``MCP_CHECKPOINT_*`` environment and its keyword arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mcp_checkpoint.config import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("MCP_CHECKPOINT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MCP_CHECKPOINT_DATA_DIR", str(tmp_path))


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **kwargs: Any) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(**kwargs)


@pytest.mark.parametrize(
    ("env", "kwargs", "path", "expected"),
    [
        pytest.param({"mcp_checkpoint_tenant": "t1"}, {}, "tenant", "t1", id="any-case-name"),
        pytest.param({"Mcp_Checkpoint_Limits__Max_Step_Bytes": "4096"}, {},
                     "limits.max_step_bytes", 4096, id="any-case-nested-name"),
        pytest.param({"MCP_CHECKPOINT_CHECKPOINT__TRIGGER_TOOLS": '["git_commit", "x"]'}, {},
                     "checkpoint.trigger_tools", ["git_commit", "x"], id="json-list"),
        pytest.param({"MCP_CHECKPOINT_LIMITS": '{"max_step_bytes": 2048}'}, {},
                     "limits.max_step_bytes", 2048, id="json-group"),
        pytest.param({"MCP_CHECKPOINT_LIMITS": '{"max_step_bytes": 2048}',
                      "MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES": "4096"}, {},
                     "limits.max_step_bytes", 4096, id="nested-variable-beats-group-json"),
        pytest.param({"MCP_CHECKPOINT_TENANT": "env"}, {"tenant": "kw"}, "tenant", "kw",
                     id="keyword-beats-environment"),
        pytest.param({"MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES": "4096"},
                     {"limits": {"max_text_chars": 100}}, "limits.max_step_bytes", 4096,
                     id="keyword-group-merges-with-environment"),
        pytest.param({"MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES": "4096"},
                     {"limits": {"max_step_bytes": 8192}}, "limits.max_step_bytes", 8192,
                     id="keyword-field-beats-environment-field"),
        pytest.param({"MCP_CHECKPOINT_SQLITE__GROUP_COMMIT": "false"}, {},
                     "sqlite.group_commit", False, id="boolean-text"),
        pytest.param({"MCP_CHECKPOINT_VECTORS__QDRANT_API_KEY": "k"}, {},
                     "vectors.qdrant_api_key", "**********", id="secret-stays-text"),
        pytest.param({"MCP_CHECKPOINT_BOGUS": "1", "MCP_CHECKPOINT_BENCH_NOOP_TOOL": "1"}, {},
                     "tenant", "local", id="unknown-top-level-variables-ignored"),
    ],
)
def test_settings_read_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kwargs: dict[str, Any], path: str,
    expected: object,
) -> None:
    value: Any = _settings(monkeypatch, env, **kwargs)
    for part in path.split("."):
        value = getattr(value, part)
    assert (str(value) if path.endswith("api_key") else value) == expected


@pytest.mark.parametrize(
    ("env", "loc", "kind"),
    [
        pytest.param({"MCP_CHECKPOINT_LIMITS__BOGUS": "1"}, ("limits", "bogus"),
                     "extra_forbidden", id="unknown-group-field"),
        pytest.param({"MCP_CHECKPOINT_LIMITS__MAX_STEP_BYTES": "abc"},
                     ("limits", "max_step_bytes"), "int_parsing", id="not-a-number"),
        pytest.param({"MCP_CHECKPOINT_CHECKPOINT__TRIGGER_TOOLS": "git_commit"},
                     ("checkpoint", "trigger_tools"), "list_type", id="list-not-json"),
        pytest.param({"MCP_CHECKPOINT_LIMITS": "notjson"}, ("limits",), "model_type",
                     id="group-not-json"),
        pytest.param({"MCP_CHECKPOINT_LOG_LEVEL": "info"}, ("log_level",), "literal_error",
                     id="values-keep-their-case"),
        pytest.param({"MCP_CHECKPOINT_WEBHOOK__URL": "https://example.invalid/hook"},
                     ("webhook",), "value_error", id="cross-field-rule"),
    ],
)
def test_bad_environment_values_are_validation_errors_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], loc: tuple[str, ...], kind: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _settings(monkeypatch, env)
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(loc, kind)]


def test_keyword_arguments_name_only_known_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="extra"):
        _settings(monkeypatch, {}, bogus=1)
