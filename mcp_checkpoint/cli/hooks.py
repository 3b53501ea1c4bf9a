"""``mcp-checkpoint hook <client>`` and ``mcp-checkpoint install <client>``.

``hook <client>`` runs once per hook event of the client (``claude-code``, ``gemini-cli``,
``codex``): ``cli.main`` hands it to :func:`hook_main` before building the other
commands' parsers or Settings, so the per-tool-call path loads neither pydantic nor the
store; it always exits 0. ``install <client>`` merges the hooks (and the server, where the
client keeps it in JSON) into the client's settings files.
"""

from __future__ import annotations

import sys
from pathlib import Path

TYPE_CHECKING = False  # not typing's: a hook process imports as little as it can
if TYPE_CHECKING:
    import argparse

    from mcp_checkpoint.config import Settings

__all__ = ["register"]

HOOK_CLIENTS = ("claude-code", "gemini-cli", "codex")  # adapters.clients.CLIENTS


def cmd_hook(settings: Settings | None, args: argparse.Namespace) -> int:
    """Handle one hook event from stdin (or, with --drain, apply the spool)."""
    return _run_hook(args.client, args.budget, args.drain)


def _run_hook(client: str, budget: int | None, drain: bool) -> int:
    from mcp_checkpoint.adapters import claude_code

    if drain:
        return claude_code.run_drainer()
    return claude_code.main(budget, sys.stdin.buffer, sys.stdout, client)


def hook_main(argv: list[str]) -> int:
    """``mcp-checkpoint hook ...`` without the rest of the CLI: the arguments a client's
    settings hold (``CLIENT [--budget N] [--drain]``) are read by hand, since argparse
    alone costs the per-tool-call process a few milliseconds; anything else (``--help``,
    a typo) goes to argparse for its usual messages."""
    client, budget, drain = (argv[0] if argv else ""), None, False
    rest = argv[1:]
    ok = client in HOOK_CLIENTS
    while ok and rest:
        if rest[0] == "--drain":
            drain, rest = True, rest[1:]
        elif rest[0] == "--budget" and len(rest) > 1 and rest[1].isdigit() and (
            int(rest[1]) >= 128
        ):
            budget, rest = int(rest[1]), rest[2:]
        elif rest[0].startswith("--budget=") and rest[0][9:].isdigit() and (
            int(rest[0][9:]) >= 128
        ):
            budget, rest = int(rest[0][9:]), rest[1:]
        else:
            ok = False
    if ok:
        return _run_hook(client, budget, drain)
    import argparse

    parser = argparse.ArgumentParser(prog="mcp-checkpoint hook")
    _hook_arguments(parser)
    args = parser.parse_args(argv)
    return _run_hook(args.client, args.budget, args.drain)


def _hook_arguments(parser: argparse.ArgumentParser) -> None:
    import argparse

    parser.add_argument("client", choices=list(HOOK_CLIENTS),
                        help="the client whose hook fired")
    parser.add_argument("--budget", type=_budget, default=None,
                        help="tokens of the context SessionStart injects (hooks.budget_tokens)")
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)


def cmd_install(settings: Settings, args: argparse.Namespace) -> int:
    """Merge (or remove) the MCP server registration and the hooks."""
    import shlex

    from mcp_checkpoint.adapters.install import TARGETS, claude_code_command, install_client
    from mcp_checkpoint.cli._common import out

    project = None
    if not args.user:
        project = Path(args.project) if args.project is not None else Path.cwd()
    changes = install_client(
        args.client,
        project=project,
        user=args.user,
        uninstall=args.uninstall,
        budget=args.budget,
        command=args.command,
    )
    for change in changes:
        for line in change.lines():
            out(line)
    if not args.uninstall and any(c.changed for c in changes):
        server = shlex.join([*claude_code_command(args.command), "serve"])
        out(TARGETS[args.client].after.format(server=server))
    return 0


def _budget(text: str) -> int:
    import argparse

    value = int(text)
    if value < 128:
        raise argparse.ArgumentTypeError("the budget must be at least 128 tokens")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hook`` and ``install``."""
    hook = sub.add_parser(
        "hook", help="handle one client hook event (JSON on stdin); run by the client"
    )
    _hook_arguments(hook)
    hook.set_defaults(func=cmd_hook)

    install = sub.add_parser(
        "install", help="connect a client: MCP server registration and capture hooks"
    )
    install.add_argument("client", choices=list(HOOK_CLIENTS), help="the client to connect")
    scope = install.add_mutually_exclusive_group()
    scope.add_argument("--project", metavar="DIR",
                       help="this project only (claude-code: DIR/.claude/settings.json and "
                            "DIR/.mcp.json; gemini-cli: DIR/.gemini/settings.json; codex: "
                            "DIR/.codex/hooks.json; default: the current directory)")
    scope.add_argument("--user", action="store_true",
                       help="every project: the same files under your home directory "
                            "(claude-code: ~/.claude/settings.json and ~/.claude.json)")
    install.add_argument("--uninstall", action="store_true",
                         help="remove what install added (and nothing else)")
    install.add_argument("--budget", type=_budget, default=None,
                         help="pass --budget N to the hooks (the tokens of the context they "
                              "inject)")
    install.add_argument("--command", default=None,
                         help="how the client starts mcp-checkpoint (default: the absolute "
                              "path of the installed console script)")
    install.set_defaults(func=cmd_install)
