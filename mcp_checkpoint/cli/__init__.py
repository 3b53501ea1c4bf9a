"""The command line: the only argv parser, and the only place Settings is built.

    mcp-checkpoint serve                 run the MCP server on stdio (the default)
    mcp-checkpoint serve --transport http|sse [--host H --port P]   remote serving
    mcp-checkpoint tokens create|list|revoke   bearer tokens of a remote server
    mcp-checkpoint runs list|show|verify|log|export|checkpoints|delete   inspect and curate
    mcp-checkpoint memories list|forget  browse and delete long-term memories
    mcp-checkpoint ui                    a local web view of runs and memories
    mcp-checkpoint runs prune            retention: old steps/checkpoints of finished runs
    mcp-checkpoint reindex               embed memories after installing or changing a model
    mcp-checkpoint export|import         resume packs: move or back up runs and memories
    mcp-checkpoint doctor                check the configuration and the store
    mcp-checkpoint install claude-code|gemini-cli|codex   the server and the capture hooks
    mcp-checkpoint hook claude-code|gemini-cli|codex      one hook event (run by the client)
    mcp-checkpoint bench loop ...        benchmarks (from a source checkout)

Each command group is a module of this package named in :data:`COMMANDS`, with a
``register(sub)`` that adds its parsers. Registering must stay cheap (argparse only): a
handler imports what it needs (the store, the server, the SDK) inside its body, so that
``--version`` or ``tokens list`` never pay for what ``serve`` loads. To add a group, write
``cli/<name>.py`` with ``register`` and put ``<name>`` into :data:`COMMANDS`.

Logs go to stderr; on stdio, stdout belongs to the MCP protocol alone.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: ``hook`` runs once per tool call and imports little
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

# The command-group modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "serve", "tokens", "runs", "memories", "restore", "ui", "reindex", "packs", "doctor",
    "hooks", "bench",
)


def _version() -> str:
    from mcp_checkpoint import __version__

    return str(__version__)


def _version_action() -> type[argparse.Action]:
    """``--version`` that looks the version up only when asked."""
    import argparse

    class _VersionAction(argparse.Action):
        def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                     default: str = argparse.SUPPRESS, help: str | None = None) -> None:
            super().__init__(option_strings=option_strings, dest=dest, default=default,
                             nargs=0, help=help)

        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                     values: object, option_string: str | None = None) -> None:
            sys.stdout.write(f"mcp-checkpoint {_version()}\n")
            parser.exit()

    return _VersionAction


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``mcp-checkpoint``; with ``only``, the same parser holding
    that one command group. Everything after the command name is its own parser's, so
    a command line that starts with that name parses (and fails) exactly as with all of
    them: ``serve`` starts without importing and building the other command groups."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="mcp-checkpoint",
        description="An MCP server that gives LLM agents checkpointed episodic memory.",
    )
    parser.add_argument("--version", action=_version_action(),
                        help="show program's version number and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcp-checkpoint`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["--version"]:  # what argparse would do, without building the parser
        sys.stdout.write(f"mcp-checkpoint {_version()}\n")
        raise SystemExit(0)
    if arguments[:1] == ["bench"]:
        from mcp_checkpoint.cli.bench import run

        return run(arguments[1:])
    if arguments[:1] == ["hook"]:
        # A client hook runs once per tool call: no other command's parser, no Settings.
        from mcp_checkpoint.cli.hooks import hook_main

        return hook_main(arguments[1:])
    from mcp_checkpoint.cli._common import startup

    with startup():
        # ``serve`` registers just its own command (see build_parser).
        parser = build_parser("serve" if arguments[:1] == ["serve"] else None)
        args = parser.parse_args(arguments)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return 2
        from pydantic import ValidationError

        from mcp_checkpoint.config import Settings
        from mcp_checkpoint.errors import CheckpointError

        try:
            settings = Settings()
        except ValidationError as exc:
            sys.stderr.write(f"mcp-checkpoint: invalid configuration:\n{exc}\n")
            return 2
    from mcp_checkpoint.cli._common import setup_logging
    from mcp_checkpoint.config import retired_variables

    setup_logging(settings)
    for note in retired_variables():
        sys.stderr.write(f"mcp-checkpoint: {note}\n")
    try:
        code: int = args.func(settings, args)
    except CheckpointError as exc:
        from mcp_checkpoint._text import neutralise

        sys.stderr.write(f"mcp-checkpoint: {neutralise(str(exc))}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return code
