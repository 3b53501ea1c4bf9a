"""The ``files`` of a ``checkpoint`` call, as bytes: inline text, base64, or (on a local
stdio server only) a path read from inside the client's MCP roots."""

from __future__ import annotations

import base64
import binascii
import functools
import os
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import anyio
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from pydantic import BaseModel, ConfigDict, Field

from mcp_checkpoint.config import SnapshotSettings
from mcp_checkpoint.errors import InvalidArgumentError, PayloadTooLargeError

__all__ = ["FileIn", "resolve_files"]


class FileIn(BaseModel):
    """One workspace file to keep with a checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="Relative path inside the workspace (POSIX '/').")
    content: str | None = Field(None, description="The file's text (UTF-8).")
    content_base64: str | None = Field(None, description="The file's bytes, base64.")


async def _roots(ctx: Context[Any, Any]) -> list[Path]:
    caps = ctx.client_capabilities
    if caps is None or caps.roots is None:
        raise InvalidArgumentError(
            "a file given by path alone is read from the client's roots, and this client "
            "shares none; pass its content or content_base64"
        )
    try:
        with warnings.catch_warnings():  # roots are deprecated by 2026-07-28, still used
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            listed = await ctx.session.list_roots()
    except MCPError as exc:  # no back-channel, or the client refused
        raise InvalidArgumentError(
            f"could not read the client's roots ({type(exc).__name__}); pass the files' "
            "content instead"
        ) from exc
    folders = [
        Path(unquote(parsed.path))
        for parsed in (urlparse(str(root.uri)) for root in listed.roots)
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost")
    ]
    roots = await anyio.to_thread.run_sync(lambda: [f.resolve() for f in folders])
    if not roots:
        raise InvalidArgumentError("the client's roots hold no local folder (file://)")
    return roots


def _read_inside(roots: list[Path], rel: str, limit: int, index: int) -> bytes:
    for root in roots:
        candidate = root / rel
        try:
            real = candidate.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, RuntimeError) as exc:  # a loop of links, no permission...
            problem = getattr(exc, "strerror", None) or str(exc)
            raise InvalidArgumentError(f"files.{index}.path {rel!r}: {problem}") from exc
        if os.path.commonpath([real, root]) != str(root):
            raise InvalidArgumentError(
                f"files.{index}.path {rel!r} leads outside the client's roots (a link); refused"
            )
        if not real.is_file():
            raise InvalidArgumentError(f"files.{index}.path {rel!r} is not a regular file")
        size = real.stat().st_size
        if size > limit:
            raise PayloadTooLargeError(
                f"files.{index} ({rel}) is {size} bytes; the limit is {limit} "
                "(snapshots.max_file_bytes)"
            )
        return real.read_bytes()
    raise InvalidArgumentError(f"files.{index}.path {rel!r} is in none of the client's roots")


async def resolve_files(
    ctx: Context[Any, Any], files: list[FileIn], *, remote: bool, settings: SnapshotSettings
) -> list[tuple[str, bytes]]:
    """(path, bytes) of each file; InvalidArgumentError naming the item otherwise."""
    # Imported here: the snapshot machinery is not needed to start the server.
    from mcp_checkpoint.core.snapshots import check_path

    out: list[tuple[str, bytes]] = []
    roots: list[Path] | None = None
    for i, item in enumerate(files):
        check_path(item.path, field_name=f"files.{i}.path")
        if item.content is not None and item.content_base64 is not None:
            raise InvalidArgumentError(f"files.{i}: give content or content_base64, not both")
        if item.content is not None:
            out.append((item.path, item.content.encode("utf-8", "surrogatepass")))
        elif item.content_base64 is not None:
            try:
                data = base64.b64decode(item.content_base64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidArgumentError(f"files.{i}.content_base64 is not base64") from exc
            out.append((item.path, data))
        elif remote:
            raise InvalidArgumentError(
                f"files.{i}: a remote server cannot read {item.path!r} from your disk; pass "
                "its content or content_base64"
            )
        else:
            if roots is None:
                roots = await _roots(ctx)
            read = functools.partial(_read_inside, roots, item.path, settings.max_file_bytes, i)
            out.append((item.path, await anyio.to_thread.run_sync(read)))
    return out
