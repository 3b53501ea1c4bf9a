"""The distiller's rules: what a checkpoint keeps of the steps it covers."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

from mcp_checkpoint.config import CheckpointSettings
from mcp_checkpoint.core.distill import (
    RulesDistiller,
    carry_over,
    check_sampled,
    extract_artifacts,
    merge_auto_artifacts,
    merge_checkpoint,
    settle_errors,
)
from mcp_checkpoint.core.models import (
    Artifact,
    CheckpointContent,
    CheckpointPatch,
    Run,
    RunId,
    Step,
)
from mcp_checkpoint.core.outcomes import outcome
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
    assert rendered["auto_artifacts"] == ["- files: src/a.py"]


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
    assert sorted(x.value for x in merged) == ["abc1234", "x.py"]


# -- realistic outputs --------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RUN = Run(
    run_id=RunId("r1"), objective="x", budget_tokens=8000, created_at=NOW, updated_at=NOW,
    head_hash="h",
)


def st(seq: int, tool: str, inp: object, out: object = None, **kw: object) -> Step:
    return Step.model_validate(
        {
            "run_id": "r1", "seq": seq, "episode": 1, "tool": tool, "input": inp,
            "output": out, "tokens": 1, "cum_tokens": seq, "created_at": NOW,
            "prev_hash": "p", "hash": "h", **kw,
        }
    )


def long_pytest(last: str) -> str:
    lines = ["============================= test session starts ==============================",
             "platform linux -- Python 3.11.9, pytest-8.3.3, pluggy-1.5.0",
             "collected 3000 items", ""]
    lines += [f"tests/test_mod{i}.py::test_case_{i} PASSED" for i in range(2999)]
    lines += ["tests/test_core.py::test_final_boss FAILED", "",
              "=================================== FAILURES ===================================",
              "_______________________________ test_final_boss ________________________________",
              "    def test_final_boss():", ">       assert boss.hp == 0",
              "E       AssertionError: assert 12 == 0", "",
              "tests/test_core.py:41: AssertionError",
              "=========================== short test summary info ============================",
              last,
              "======================= 1 failed, 2999 passed in 41.20s ========================"]
    return "\n".join(lines)


TRACEBACK = """Traceback (most recent call last):
  File "/app/reproduce.py", line 12, in <module>
    main()
  File "/app/reproduce.py", line 9, in main
    print(parse_config(path)["retries"])
KeyError: 'retries'"""

CARGO = """   Compiling demo v0.1.0 (/work/demo)
error[E0308]: mismatched types
 --> src/main.rs:4:18
  |
4 |     let n: u32 = "five";
  |            ---   ^^^^^^ expected `u32`, found `&str`

For more information about this error, try `rustc --explain E0308`.
error: could not compile `demo` (bin "demo") due to 1 previous error"""

NPM = """npm ERR! Missing script: "biuld"
npm ERR!
npm ERR! Did you mean this?
npm ERR!     npm run build # run the "build" package script
npm ERR! A complete log of this run can be found in: /root/.npm/_logs/2026-01-01-debug-0.log"""

GIT_COMMIT = """[fix/final-boss 3f2a9c1] Fix the boss hit points (ABC-123)
 2 files changed, 14 insertions(+), 3 deletions(-)"""

GIT_PUSH = """Enumerating objects: 9, done.
To github.com:acme/game.git
   77ab12e..3f2a9c1  fix/final-boss -> fix/final-boss"""

GH_PR = """Creating pull request for fix/final-boss into main in acme/game

https://github.com/acme/game/pull/481"""


def test_a_long_pytest_run_keeps_its_failing_line_not_its_first() -> None:
    out = long_pytest("FAILED tests/test_core.py::test_final_boss - AssertionError")
    result = outcome(st(7, "bash", "pytest -q", out))
    assert result.failed
    assert result.lines[0] == "FAILED tests/test_core.py::test_final_boss - AssertionError"
    assert "1 failed, 2999 passed in 41.20s" in result.lines
    assert not any("PASSED" in line for line in result.lines)
    assert result.failed_tests == ("tests/test_core.py::test_final_boss",)


def test_a_traceback_keeps_its_last_exception_line_even_when_the_step_says_ok() -> None:
    result = outcome(st(3, "bash", "python reproduce.py", TRACEBACK))
    assert result.failed
    assert result.lines == ("KeyError: 'retries'",)


def test_compiler_and_package_manager_errors_keep_the_error_line_and_location() -> None:
    cargo = outcome(st(1, "bash", "cargo build", CARGO, status="error"))
    assert cargo.lines[:2] == ("error[E0308]: mismatched types", "--> src/main.rs:4:18")
    npm = outcome(st(2, "bash", "npm run biuld", NPM, status="error"))
    assert npm.lines[0] == 'npm ERR! Missing script: "biuld"'


def test_a_non_zero_exit_code_is_kept() -> None:
    result = outcome(st(1, "bash", "make deploy", "deploying...\nmake: *** [deploy] Error 2\n"
                        "Process completed with exit code 2.", status="error"))
    assert "exit code 2" in result.lines


def test_a_successful_step_is_not_an_error() -> None:
    for out in (GIT_COMMIT, GIT_PUSH, GH_PR, "===== 12 passed in 0.31s ====="):
        assert not outcome(st(1, "bash", "x", out)).failed


def test_an_error_drops_out_once_the_same_command_passes() -> None:
    steps = [
        st(1, "bash", "python reproduce.py", TRACEBACK),
        st(2, "edit", "config.py", "File updated."),
        st(3, "bash", "python reproduce.py", "3"),
    ]
    assert settle_errors([], steps[:2]) == ["#1 bash `python reproduce.py`: KeyError: 'retries'"]
    assert settle_errors([], steps) == []


def test_an_error_drops_out_once_its_failed_test_passes_in_a_later_step() -> None:
    failing = long_pytest("FAILED tests/test_core.py::test_final_boss - AssertionError")
    earlier = settle_errors([], [st(4, "bash", "pytest -q", failing)])
    assert len(earlier) == 1 and "test_final_boss" in earlier[0]
    still = settle_errors(earlier, [st(9, "bash", "pytest tests/test_other.py", "== 3 passed ==")])
    assert still == earlier  # another test file passing settles nothing
    passed = "tests/test_core.py::test_final_boss PASSED\n==== 1 passed in 0.2s ===="
    later = st(9, "bash", "pytest tests/test_core.py::test_final_boss -v", passed)
    assert settle_errors(earlier, [later]) == []


def test_the_newest_failure_of_a_command_replaces_the_older() -> None:
    steps = [st(1, "bash", "npm run biuld", NPM, status="error"),
             st(2, "bash", "npm run biuld", NPM, status="error")]
    errors = settle_errors([], steps)
    assert len(errors) == 1 and errors[0].startswith("#2 ")


def test_artifacts_keep_urls_whole_commits_tickets_and_failing_tests() -> None:
    steps = [
        st(1, "bash", "pytest -q", long_pytest("FAILED tests/test_core.py::test_final_boss - "
                                               "AssertionError")),
        st(2, "bash", 'git commit -am "Fix the boss hit points (ABC-123)"', GIT_COMMIT),
        st(3, "bash", "git push -u origin fix/final-boss", GIT_PUSH),
        st(4, "bash", "gh pr create --fill", GH_PR),
    ]
    found = extract_artifacts(steps, 60, [outcome(s) for s in steps])
    by_kind: dict[str, list[str]] = {}
    for artifact in found:
        by_kind.setdefault(artifact.kind, []).append(artifact.value)
    assert "https://github.com/acme/game/pull/481" in by_kind["url"]
    assert "github.com" not in by_kind.get("file", []) + by_kind.get("url", [])
    assert {"3f2a9c1", "77ab12e"} <= set(by_kind["commit"])
    assert "ABC-123" in by_kind["ticket"]
    assert by_kind["test"][0] == "tests/test_core.py::test_final_boss"  # the failing one first
    assert len(found) <= 60


def test_artifacts_leave_out_standard_library_noise() -> None:
    code = (
        "m = re.compile(r'x').match(s)\nname = m.group(1)\ndata = s.encode()\n"
        "def load_settings(path):\n    return parse_config(path)\n"
        "class RetryPolicy:\n    max_attempts = 3\nprint(len(data), __name__)\n"
    )
    values = {a.value for a in extract_artifacts([st(1, "cat", "cat app.py", code)], 60)}
    assert {"load_settings", "parse_config", "RetryPolicy", "max_attempts"} <= values
    for noise in ("m.group", "s.encode", "re.compile", "group", "encode", "compile", "print",
                  "__name__"):
        assert noise not in values
    for not_a_path in ("Y/n", "it/s", "0/9999", "and/or"):
        found = extract_artifacts([st(1, "x", "x", f"Continue? {not_a_path} 12.3it/s")], 60)
        assert not_a_path not in {a.value for a in found}


def test_a_structured_input_is_read_as_the_text_it_carries() -> None:
    # A client hook records {"command": ..., "description": ...}: its JSON escapes must
    # not glue "\\n" to the next name, and its keys are not names of the work.
    script = "cat > solve.py <<'EOF'\nimport requests\nflag_value = fetch_flag()\nEOF"
    steps = [st(1, "Bash", {"command": script, "description": "write the solver"},
                {"stdout": "", "stderr": "Traceback (most recent call last):\n"
                 "ValueError: chr() arg not in range(0x110000)"}, status="error")]
    values = {a.value for a in extract_artifacts(steps, 60, [outcome(s) for s in steps])}
    assert {"flag_value", "fetch_flag", "solve.py"} <= values
    assert not {"nimport", "nflag_value", "description", "stdout", "stderr"} & values
    assert outcome(steps[0]).lines[-1] == "ValueError: chr() arg not in range(0x110000)"


def test_the_delimiter_closing_an_edit_is_not_a_name() -> None:
    body = "edit 1:1\nretry_budget = 3\nend_of_edit\n"
    for inp in (body, {"command": body, "description": "edit"}):
        values = {a.value for a in extract_artifacts([st(1, "edit", inp, "File updated.")], 60)}
        assert "retry_budget" in values and "end_of_edit" not in values


def test_prose_about_functions_and_types_defines_no_name() -> None:
    said = ("Since the chr() function converts a number to a byte, a type error is raised.\n"
            "def decode_block(data):\n    pass\nexport default function RenderPage() {}")
    values = {a.value for a in extract_artifacts([st(1, "thought", None, reasoning=said)], 60)}
    assert {"decode_block", "RenderPage"} <= values
    assert not {"converts", "error"} & values


def test_a_url_keeps_a_pipe_it_carries() -> None:
    url = "http://web.example.org:8000/cgi-bin/file.pl?ls%20%2e|"
    found = extract_artifacts([st(1, "bash", f"curl '{url}' | head", "ok")], 60)
    assert url in {a.value for a in found if a.kind == "url"}


def test_no_kind_crowds_out_the_others() -> None:
    many_files = "\n".join(f"src/pkg/module_{i}/impl.py" for i in range(200))
    steps = [st(1, "bash", "find src", many_files),
             st(2, "bash", "gh pr view", "https://github.com/acme/game/pull/7 ABC-9 "
                 "RetryPolicy")]
    found = extract_artifacts(steps, 30)
    kinds = {a.kind for a in found}
    assert {"url", "ticket", "file", "identifier"} <= kinds
    assert len(found) == 30


def test_a_thought_keeps_its_reasoning_in_progress() -> None:
    steps = [st(1, "thought", None, None, reasoning="The cache key ignores the locale, so "
                "two users share one entry; fix make_key first.")]
    patch = anyio.run(RulesDistiller(CheckpointSettings()).distill, RUN, None, steps, 0)
    assert patch.progress is not None
    assert "(no output)" not in "\n".join(patch.progress)
    assert "fix make_key first" in patch.progress[-1]


def test_next_actions_done_by_later_steps_are_dropped() -> None:
    previous = CheckpointContent(next_actions=[
        "Commit the fix", "Push the branch and open a PR", "Run the test suite",
        "Update the changelog",
    ])
    steps = [
        st(1, "bash", 'git commit -am "fix"', GIT_COMMIT),
        st(2, "bash", "git push -u origin fix/final-boss", GIT_PUSH),
        st(3, "bash", "gh pr create --fill", GH_PR),
        st(4, "bash", "pytest -q", "==== 3000 passed in 40.1s ===="),
    ]
    patch = anyio.run(RulesDistiller(CheckpointSettings()).distill, RUN, previous, steps, 0)
    assert patch.next_actions == ["Update the changelog"]


def test_next_actions_stay_when_the_step_failed_or_did_something_else() -> None:
    previous = CheckpointContent(next_actions=["Commit the fix", "Open the PR"])
    steps = [
        st(1, "bash", 'git commit -am "fix"', "error: pathspec did not match", status="error"),
        st(2, "bash", "gh pr list", "no open pull requests"),
    ]
    patch = anyio.run(RulesDistiller(CheckpointSettings()).distill, RUN, previous, steps, 0)
    assert patch.next_actions is None  # unchanged: the previous list stands


def test_check_sampled_drops_settled_errors_and_done_actions() -> None:
    previous = CheckpointContent(next_actions=["Commit the fix"])
    steps = [
        st(1, "bash", "python reproduce.py", TRACEBACK),
        st(2, "bash", "python reproduce.py", "3"),
        st(3, "bash", 'git commit -am "fix"', GIT_COMMIT),
    ]
    ruled = anyio.run(RulesDistiller(CheckpointSettings()).distill, RUN, previous, steps, 0)
    sampled = CheckpointPatch(
        progress=["fixed it"], errors=["#1 bash `python reproduce.py`: KeyError: 'retries'"]
    )
    checked = carry_over(check_sampled(sampled, steps, ruled), previous, steps, ruled)
    assert checked.errors == []
    assert checked.next_actions == []
    assert checked.progress == ["fixed it"]


def test_model_content_that_leaves_lists_as_they_were_loses_what_the_steps_settled() -> None:
    previous = CheckpointContent(
        next_actions=["Commit the fix", "Write the release notes"],
        errors=["#1 bash `python reproduce.py`: KeyError: 'retries'", "flaky CI on macOS"],
    )
    steps = [
        st(2, "bash", "python reproduce.py", "3"),
        st(3, "bash", 'git commit -am "fix"', GIT_COMMIT),
    ]
    ruled = anyio.run(RulesDistiller(CheckpointSettings()).distill, RUN, previous, steps, 0)
    written = carry_over(CheckpointPatch(progress=["fixed"]), previous, steps, ruled)
    assert written.next_actions == ["Write the release notes"]
    assert written.errors == ["flaky CI on macOS"]
    assert written.auto_artifacts == ruled.auto_artifacts
    # What the model wrote itself stands.
    own = carry_over(CheckpointPatch(next_actions=["Commit the fix"], errors=[]), previous,
                     steps, ruled)
    assert own.next_actions == ["Commit the fix"] and own.errors == []
