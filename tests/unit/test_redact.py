"""Secret redaction: common formats are scrubbed, ordinary text is left alone."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from mcp_checkpoint.config import Settings
from mcp_checkpoint.core.episodes import Episodes
from mcp_checkpoint.core.models import RunId, StepDraft
from mcp_checkpoint.core.redact import Redactor, _replacer
from mcp_checkpoint.storage.reference.store import ReferenceStore
from tests.unit.conftest import FakeClock, T, WordTokenizer

SECRETS = [
    pytest.param("export OPENAI_API_KEY=sk-proj-Ab3dEfGhIjKlMnOpQrStUvWx01", "sk-proj-Ab3d",
                 id="openai"),
    pytest.param("key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345", "sk-ant-api03",
                 id="anthropic"),
    pytest.param("token ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "ghp_AbCd", id="github"),
    pytest.param("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_11",
                 id="github-pat"),
    pytest.param("xoxb-123456789012-abcdefghijkl", "xoxb-1234", id="slack"),
    pytest.param("AIzaSyA-abcdefghijklmnopqrstuvwxyz012345", "AIzaSyA", id="google"),
    pytest.param("sk_live_abcdefghijklmnop0123", "sk_live_abc", id="stripe"),
    pytest.param("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7", id="aws-key-id"),
    pytest.param("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtn",
                 id="aws-secret"),
    pytest.param('curl -H "Authorization: Bearer abcdef0123456789abcdef" https://api.x.io',
                 "abcdef0123456789", id="bearer"),
    pytest.param("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy", id="basic"),
    pytest.param("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I",
                 "eyJhbGciOiJIUzI1NiJ9", id="jwt"),
    pytest.param("DATABASE_URL=postgresql://app:hunter2pass@db.internal:5432/prod", "hunter2pass",
                 id="url-credentials"),
    pytest.param("password=hunter2", "hunter2", id="password-assignment"),
    pytest.param('DB_PASSWORD: "s3cr3t!!"', "s3cr3t!!", id="yaml-password"),
    pytest.param('{"client_secret": "abcd-efgh-ijkl"}', "abcd-efgh", id="json-text-secret"),
    pytest.param("mysql -u root --password=topsecret1", "topsecret1", id="cli-flag"),
    pytest.param("gh auth login --token abcdefgh123", "abcdefgh123", id="cli-flag-space"),
    pytest.param("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                 "-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEAAAAA", id="private-key"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_redactor_removes_common_secret_formats(text: str, secret: str) -> None:
    redacted = Redactor().text(text)

    assert secret not in redacted
    assert "[REDACTED:" in redacted


NON_SECRETS = [
    pytest.param("max_tokens=1000 budget_tokens: 2000 token_count = 5", id="token-counts"),
    pytest.param("def login(password: str, token: Optional[str] = None) -> None:",
                 id="annotations"),
    pytest.param("https://github.com/acme/app/pull/42 merged as 1a2b3c4d5e6f7a8b", id="pr-and-sha"),
    pytest.param("FAILED tests/test_core.py::test_final_boss - AssertionError", id="pytest"),
    pytest.param("git commit -m 'fix: password reset email'", id="prose-about-passwords"),
    pytest.param("src/auth/tokens.py:12: def refresh_token(self):", id="code-path"),
    pytest.param("https://docs.python.org/3/library/re.html#re.sub", id="plain-url"),
    pytest.param("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 id="digest"),
    # a prompt at the end of a line: what follows on the next line is not its value
    pytest.param("Password: \nLogin incorrect\nlogin: ", id="prompt-then-next-line"),
    pytest.param("token =\nrefresh_after_reboot()", id="assignment-split-across-lines"),
]


@pytest.mark.parametrize("text", NON_SECRETS)
def test_redactor_leaves_ordinary_text_alone(text: str) -> None:
    assert Redactor().text(text) == text


def test_redactor_keeps_the_name_and_is_idempotent() -> None:
    red = Redactor()
    once = red.text("password=hunter2 and Bearer abcdefghijklmnopqrstu")

    assert once == "password=[REDACTED:assignment] and Bearer [REDACTED:bearer_token]"
    assert red.text(once) == once


def test_redactor_json_redacts_values_under_secret_keys_and_keeps_the_rest() -> None:
    value = {
        "command": "deploy",
        "env": {"API_KEY": "plain-looking-value", "tokens": 12, "REGION": "eu-west-1"},
        "args": ["--verbose", "url=https://u:pw12345@host/x"],
    }

    out = Redactor().json(value)

    assert out["command"] == "deploy"
    assert out["env"] == {"API_KEY": "[REDACTED:assignment]", "tokens": 12, "REGION": "eu-west-1"}
    assert out["args"][1] == "url=https://u:[REDACTED:url_credentials]@host/x"


def test_redactor_extra_patterns_and_disabled() -> None:
    assert Redactor(["ACME-[0-9]{8}"]).text("ticket ACME-12345678 ok") == (
        "ticket [REDACTED:custom] ok"
    )
    assert Redactor(enabled=False).text("password=hunter2") == "password=hunter2"


def test_settings_reject_a_bad_extra_pattern(tmp_path: object) -> None:
    with pytest.raises(ValueError, match=r"redaction.extra_patterns: '\(unclosed'"):
        Settings(data_dir=tmp_path, redaction={"extra_patterns": ["(unclosed"]})  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("padding", [
    pytest.param(0, id="small-step-inline"),
    pytest.param(100_000, id="large-step-on-a-thread"),
])
async def test_record_step_stores_the_redacted_step(tmp_path: object, padding: int) -> None:
    settings = Settings(data_dir=tmp_path, redaction={"extra_patterns": ["ACME-[0-9]+"]})  # type: ignore[arg-type]
    episodes = Episodes(ReferenceStore(), WordTokenizer(), settings, clock=FakeClock())
    run = await episodes.start_run(T, "deploy")
    draft = StepDraft(
        tool="bash",
        input={"cmd": "curl -H 'Authorization: Bearer abcdefghijklmnop123' x", "token": "t0k3n"},
        output="." * padding + "ok ACME-42 password=hunter2",
        reasoning="used sk-proj-Ab3dEfGhIjKlMnOpQrStUvWx01",
        idempotency_key="k1",
    )

    ack = await episodes.record_step(T, run.run_id, draft)
    retried = await episodes.record_step(T, run.run_id, draft)
    [stored] = await episodes.ledger(T, RunId(run.run_id))

    assert retried.duplicate and retried.seq == ack.seq
    text = f"{stored.input} {stored.output} {stored.reasoning}"
    for secret in ("abcdefghijklmnop123", "t0k3n", "ACME-42", "hunter2", "sk-proj-Ab3d"):
        assert secret not in text
    assert stored.output == "." * padding + "ok [REDACTED:custom] password=[REDACTED:assignment]"
    assert ack.working_tokens > 0


class _EveryPattern(Redactor):
    """The redactor without its literal prefilter: every pattern runs on every text."""

    def text(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        for kind, source, group, _ in self._patterns:
            text = re.sub(source, _replacer(kind.partition("#")[0], group), text)
        return text


_FRAGMENTS = [str(p.values[0]) for p in SECRETS] + [
    "ls -la", "def token_count(x):", "API docs", "Password reset page", "x@y.z", "ACCA",
    "Bearer", "eyJ", "sk-", "hf_", "_live_", "://", "\n", " ", "AIza", "ghp_", "PRIVATE KEY",
]


@examples(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=12), max_size=8))
def test_the_literal_prefilter_changes_no_result(parts: list[str]) -> None:
    text = "".join(parts)
    assert Redactor().text(text) == _EveryPattern().text(text)
    assert Redactor().text(text.upper()) == _EveryPattern().text(text.upper())


_LINE_FRAGMENTS = [
    *_FRAGMENTS,
    "\n", "\n", "\r\n", "password", "Password:", "DB_PASSWORD", "token", "--token", " = ",
    ": ", "=", "'", '"', "hunter2x", "abcdefgh1234", "api_key", "secret", "credentials",
    "İ", "user:pw@", "https://a", "\t", " str", "{", ",",
]


@examples(max_examples=600, derandomize=True, deadline=None)
@given(st.lists(st.sampled_from(_LINE_FRAGMENTS) | st.text(max_size=6), max_size=24))
def test_running_line_patterns_on_needle_lines_changes_no_result(parts: list[str]) -> None:
    # The patterns that match within a line run on the lines that hold their needles only.
    text = "".join(parts)
    assert Redactor().text(text) == _EveryPattern().text(text)
