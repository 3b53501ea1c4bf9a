"""``mcp-checkpoint tokens create|list|revoke``: the bearer tokens of a remote server
(API credentials; nothing to do with LLM token counting)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mcp_checkpoint.cli._common import out

if TYPE_CHECKING:
    from mcp_checkpoint.config import Settings

__all__ = ["register"]


def cmd_tokens_create(settings: Settings, args: argparse.Namespace) -> int:
    """Create a bearer token; print it once (only its hash is stored)."""
    from mcp_checkpoint.server.bearer import TokenFile, parse_scopes

    token, record = TokenFile(settings.data_dir).create(
        args.tenant, parse_scopes(args.scope), name=args.name
    )
    if args.json:
        out(json.dumps({"token": token, "token_id": record.token_id, "tenant": record.tenant,
                        "scopes": record.scopes}))
        return 0
    out(token)
    sys.stderr.write(
        f"created {record.token_id} for tenant {record.tenant} "
        f"(scopes: {','.join(record.scopes)}); the token above is shown only now\n"
    )
    return 0


def cmd_tokens_list(settings: Settings, args: argparse.Namespace) -> int:
    """List tokens (ids, tenants, scopes; never the secrets)."""
    from mcp_checkpoint.server.bearer import TokenFile, dump_record

    records = TokenFile(settings.data_dir).records()
    if not args.all:
        records = [r for r in records if r.revoked_at is None]
    if args.json:
        out(json.dumps([dump_record(r) for r in records], indent=1))
        return 0
    if not records:
        out("no tokens")
        return 0
    out(f"{'ID':<18} {'TENANT':<20} {'SCOPES':<20} {'CREATED':<20} {'STATUS':<8} NAME")
    for r in records:
        status = "revoked" if r.revoked_at else "active"
        out(f"{r.token_id:<18} {r.tenant:<20} {','.join(r.scopes):<20} "
            f"{r.created_at:%Y-%m-%d %H:%M:%S}  {status:<8} {r.name or ''}")
    return 0


def cmd_tokens_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Revoke a token by id (a running server refuses it from its next request)."""
    from mcp_checkpoint.server.bearer import TokenFile

    record = TokenFile(settings.data_dir).revoke(args.token_id)
    out(f"revoked {record.token_id} (tenant {record.tenant})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tokens create|list|revoke``."""
    tokens = sub.add_parser("tokens", help="bearer tokens of a remote (http/sse) server")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens_sub.add_parser("create", help="create a token (printed once)")
    create.add_argument("--tenant", required=True, help="the tenant the token acts as")
    create.add_argument("--scope", default="read,write",
                        help="comma-separated: read, write, metrics (default read,write)")
    create.add_argument("--name", help="a label (who or what uses it)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=cmd_tokens_create)
    listing = tokens_sub.add_parser("list", help="list tokens (never the secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id", metavar="ID")
    revoke.set_defaults(func=cmd_tokens_revoke)
