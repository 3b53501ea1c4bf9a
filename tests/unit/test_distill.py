"""The distiller's rules: what a checkpoint keeps of the steps it covers."""

from __future__ import annotations

from mcp_checkpoint.config import CheckpointSettings
from mcp_checkpoint.core.distill import (
    extract_artifacts,
    merge_auto_artifacts,
    merge_checkpoint,
)
from mcp_checkpoint.core.models import Artifact, CheckpointContent, CheckpointPatch
from mcp_checkpoint.core.render import render_checkpoint


def a(kind: str, value: str) -> Artifact:
    return Artifact.model_validate({"kind": kind, "value": value})


# -- the data model -----------------------------------------------------------------------


def test_content_stored_before_extracted_artifacts_existed_still_loads() -> None:
    stored = '{"progress": ["p"], "artifacts": ["src/a.py", "abc1234"], "errors": []}'
    content = CheckpointContent.model_validate_json(stored)
    assert content.artifacts == ["src/a.py", "abc1234"]
    assert content.auto_artifacts == []


def test_render_tells_model_written_from_extracted_artifacts() -> None:
    content = CheckpointContent(artifacts=["plan.md"], auto_artifacts=[a("file", "src/a.py")])
    rendered = render_checkpoint(content)
    assert rendered["artifacts"] == ["- plan.md"]
    assert rendered["auto_artifacts"] == ["- src/a.py"]


def test_merge_keeps_model_artifacts_apart_and_extracted_newest_first() -> None:
    limits = CheckpointSettings()
    first = merge_checkpoint(
        None,
        CheckpointPatch(artifacts=["plan.md"], auto_artifacts=[a("file", "old.py")]),
        limits,
    )
    second = merge_checkpoint(
        first,
        CheckpointPatch(auto_artifacts=[a("file", "new.py"), a("file", "plan.md")]),
        limits,
    )
    assert second.artifacts == ["plan.md"]
    assert [x.value for x in second.auto_artifacts] == ["new.py", "old.py"]


def test_merge_extracted_never_evicts_model_artifacts() -> None:
    limits = CheckpointSettings(max_artifacts=3)
    many = [a("identifier", f"name_{i}") for i in range(50)]
    content = merge_checkpoint(
        None, CheckpointPatch(artifacts=["a.md", "b.md", "c.md"], auto_artifacts=many), limits
    )
    assert content.artifacts == ["a.md", "b.md", "c.md"]
    assert len(content.auto_artifacts) == 3


def test_merge_auto_artifacts_drops_repeats_across_checkpoints() -> None:
    merged = merge_auto_artifacts(
        [a("commit", "abc1234"), a("file", "x.py")], [a("file", "x.py")], [], 10
    )
    assert [x.value for x in merged] == ["x.py", "abc1234"]


# -- extraction -----------------------------------------------------------------------------


def test_extract_artifacts_skips_slashed_words_and_keeps_urls() -> None:
    found = extract_artifacts(
        ["Proceed? Y/n at 45.3it/s, 0/9999 and/or", "GET https://example.org/api/v1?q=2 ok",
         "see ./run.sh and /etc/hosts and lib/a/b"],
        30,
    )
    values = {x.value: x.kind for x in found}
    assert not {"Y/n", "it/s", "0/9999", "and/or", "45.3it/s"} & values.keys()
    assert values["https://example.org/api/v1?q=2"] == "url"
    assert values["./run.sh"] == values["/etc/hosts"] == values["lib/a/b"] == "file"
    assert "example.org/api/v1" not in values  # a URL's path is not a file path


def test_extract_artifacts_ranks_what_the_agent_acted_on_first() -> None:
    outputs = ["docs/x.md docs/x.md docs/x.md http://w3.org/ns http://w3.org/ns"]
    found = extract_artifacts(outputs, 30, primary=["cat src/main.py; curl http://h/a"])
    files = [x.value for x in found if x.kind == "file"]
    urls = [x.value for x in found if x.kind == "url"]
    assert files == ["src/main.py", "docs/x.md"]
    assert urls == ["http://h/a", "http://w3.org/ns"]



def test_extract_artifacts_keeps_the_names_the_agents_code_calls() -> None:
    edit = "s = Solver()\nr = remote('h', 1)\nprint(r.recvline().decode())"
    found = [x.value for x in extract_artifacts(["Solver( in prose output"], 30, primary=[edit])]
    assert {"Solver", "remote", "decode", "r.recvline"} <= set(found)
    assert "print" not in found  # builtins name nothing of the work
