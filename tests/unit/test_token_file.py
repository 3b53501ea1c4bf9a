"""The token file: hashed at rest, bound to a tenant and scopes, revocable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mcp_checkpoint.errors import InvalidArgumentError, NotFoundError
from mcp_checkpoint.server.bearer import TokenFile, parse_scopes


def test_token_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path)
    token, record = tokens.create("acme", ["read", "write"], name="ci")
    stored = tokens.path.read_text(encoding="utf-8")
    assert token not in stored and token.removeprefix("mcpck_") not in stored
    assert record.sha256 in stored
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert len(token) > 40  # 32 random bytes, URL-safe


def test_verify_finds_tenant_and_scopes_and_refuses_others(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path)
    token, _ = tokens.create("acme", ["read"])
    found = tokens.verify(token)
    assert found is not None and found.tenant == "acme" and found.scopes == ["read"]
    for bad in ("", "mcpck_", token + "x", token[:-1], "Bearer " + token):
        assert tokens.verify(bad) is None


def test_revoke_takes_effect_for_a_reader_that_already_loaded_the_file(tmp_path: Path) -> None:
    server_view = TokenFile(tmp_path)
    token, record = TokenFile(tmp_path).create("acme", ["read", "write"])
    assert server_view.verify(token) is not None
    TokenFile(tmp_path).revoke(record.token_id)
    assert server_view.verify(token) is None
    listed = TokenFile(tmp_path).records()
    assert [r.revoked_at is not None for r in listed] == [True]
    with pytest.raises(NotFoundError):
        TokenFile(tmp_path).revoke(record.token_id)


@pytest.mark.parametrize("tenant", ["", "_hidden", "a b", "x" * 65, "é"])
def test_bad_tenant_names_are_refused(tmp_path: Path, tenant: str) -> None:
    with pytest.raises(InvalidArgumentError, match="tenant"):
        TokenFile(tmp_path).create(tenant, ["read"])


def test_parse_scopes() -> None:
    assert parse_scopes("write, read,read") == ["read", "write"]
    for bad in ("", "admin", "read,admin", " , "):
        with pytest.raises(InvalidArgumentError, match="scope"):
            parse_scopes(bad)
