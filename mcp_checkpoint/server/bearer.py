"""Bearer tokens of a remote server: a small JSON file in the data directory.

A token is ``mcpck_`` followed by 32 random bytes (URL-safe base64). Only its SHA-256 is
stored: a fast hash is enough for a secret of 256 bits (nobody can guess a preimage), and
it lets a request be checked in microseconds. Each token is bound to one tenant and to
scopes (``read``, ``write``, ``metrics``). The file lives beside the store's data, not in
the store, so it works the same with every backend; replicas behind a load balancer share
it as a read-only mounted file (or use JWTs from an OAuth issuer instead).

The server re-reads the file when it changes, so ``mcp-checkpoint tokens revoke`` takes
effect on the next request without a restart.

Writers (``create``, ``revoke``) hold an exclusive lock on ``tokens.json.lock`` beside the
file for the whole read-modify-write (``fcntl.flock``; ``msvcrt.locking`` on Windows), and
still replace the file atomically, so readers never lock and never see half a file. Two
processes revoking and creating at once therefore never lose each other's change. A file
that cannot be read or parsed is a ``TokenFileError`` (a ``ConfigError``): the CLI prints
it, the HTTP server answers 503 and refuses every local token until it is fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_checkpoint.errors import ConfigError, InvalidArgumentError, NotFoundError

__all__ = [
    "SCOPES",
    "TOKEN_PREFIX",
    "TokenFile",
    "TokenFileError",
    "TokenRecord",
    "parse_scopes",
]

TOKEN_PREFIX = "mcpck_"  # noqa: S105 - a prefix, not a secret
SCOPES = ("read", "write", "metrics")
FILE_NAME = "tokens.json"
LOCK_NAME = "tokens.json.lock"
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def valid_tenant(tenant: str) -> bool:
    """Whether ``tenant`` may name a tenant of a token or a JWT claim: 1-64 characters of
    letters, digits and ``. _ : -``, starting with a letter or digit (so never a reserved
    ``__name__`` and never a control character; ``fullmatch``, so no trailing newline)."""
    return TENANT_PATTERN.fullmatch(tenant) is not None


class TokenFileError(ConfigError):
    """The token file exists but cannot be read or parsed."""


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_scopes(raw: str) -> list[str]:
    """``"read,write"`` -> ``["read", "write"]``; unknown or no scopes are an error."""
    scopes = sorted({s.strip() for s in raw.split(",") if s.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidArgumentError(
            f"scope must be a comma-separated list of {', '.join(SCOPES)}; got {raw[:60]!r}"
        )
    return scopes


class TokenRecord(BaseModel):
    """One stored token (its hash, never the token)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_id: str
    name: str | None = None
    tenant: str
    scopes: list[str]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    revoked_at: datetime | None = None


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tokens: list[TokenRecord] = []


class TokenFile:
    """The token file of a data directory: create, list, revoke, verify."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, TokenRecord] = {}

    # -- reading -----------------------------------------------------------------------

    def _read(self) -> _Document:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _Document()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise TokenFileError(
                f"the token file {self.path} cannot be read ({reason}); fix its permissions "
                "or restore it"
            ) from None
        try:
            return _Document.model_validate_json(raw)
        except ValidationError:
            raise TokenFileError(
                f"the token file {self.path} is invalid (not the JSON that `mcp-checkpoint "
                "tokens create` writes); restore it from a backup"
            ) from None

    def records(self) -> list[TokenRecord]:
        """Every token ever created here (revoked ones included), oldest first."""
        return list(self._read().tokens)

    def verify(self, token: str) -> TokenRecord | None:
        """The live record of ``token``, or None (unknown, revoked, malformed). Re-reads the
        file when its modification time or size changed since the last call."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            doc = self._read() if stamp is not None else _Document()
            self._by_hash = {r.sha256: r for r in doc.tokens if r.revoked_at is None}
            self._stamp = stamp
        digest = _hash(token)
        record = self._by_hash.get(digest)
        # The dict lookup is keyed by the hash of a 256-bit secret; compare_digest keeps the
        # final check constant-time as well.
        if record is None or not hmac.compare_digest(record.sha256, digest):
            return None
        return record

    # -- writing -----------------------------------------------------------------------

    def _write(self, doc: _Document) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(doc.model_dump_json(indent=1))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def create(
        self, tenant: str, scopes: list[str], name: str | None = None
    ) -> tuple[str, TokenRecord]:
        """A new token for ``tenant``: (the token, shown once; its stored record)."""
        if not valid_tenant(tenant):
            raise InvalidArgumentError(
                "tenant must be 1-64 characters of letters, digits and . _ : - "
                "(starting with a letter or digit)"
            )
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise InvalidArgumentError(f"scopes must be among {', '.join(SCOPES)}")
        if name is not None and len(name) > 100:
            raise InvalidArgumentError("name must be at most 100 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id="tok_" + secrets.token_hex(6),
            name=name,
            tenant=tenant,
            scopes=sorted(set(scopes)),
            sha256=_hash(token),
            created_at=datetime.now(UTC),
        )
        with _exclusive(self.path.parent / LOCK_NAME):
            doc = self._read()
            doc.tokens.append(record)
            self._write(doc)
        return token, record

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token by id (kept in the file, marked revoked). NotFoundError if no live
        token has that id."""
        with _exclusive(self.path.parent / LOCK_NAME):
            doc = self._read()
            for i, record in enumerate(doc.tokens):
                if record.token_id == token_id and record.revoked_at is None:
                    revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
                    doc.tokens[i] = revoked
                    self._write(doc)
                    return revoked
        raise NotFoundError(f"token {token_id[:40]!r} (or it is already revoked)")


def dump_record(record: TokenRecord) -> dict[str, object]:
    """A record as JSON for ``tokens list --json`` (the hash is left out too)."""
    data = json.loads(record.model_dump_json())
    data.pop("sha256", None)
    return dict(data)
