"""Wiring a client to mcp-checkpoint: merge the MCP server and the hooks into its settings.

Where each client keeps them (see docs/hooks.md and docs/claude-code.md for the sources):

- Claude Code: ``--project DIR``: hooks into ``DIR/.claude/settings.json``, the server
  into ``DIR/.mcp.json``; ``--user``: ``~/.claude/settings.json`` and ``~/.claude.json``;
- Gemini CLI: hooks and server both in ``DIR/.gemini/settings.json`` or
  ``~/.gemini/settings.json`` (and ``tools.enableHooks``, which the hooks need);
- Codex: hooks in ``DIR/.codex/hooks.json`` or ``~/.codex/hooks.json``; its servers live
  in ``config.toml``, which this does not edit (``install`` prints the command that does).

A merge keeps everything else in the files, is idempotent (a second install changes
nothing), writes a backup of a file before changing it and reports each change. Our
entries are recognised by their command (``... hook <client>``) and the server name.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_checkpoint.errors import ConfigError

__all__ = [
    "HOOK_EVENTS",
    "SERVER_NAME",
    "TARGETS",
    "Change",
    "Target",
    "claude_code_command",
    "install_claude_code",
    "install_client",
]

SERVER_NAME = "checkpoint"
_MARK = "hook claude-code"

# event -> (matcher, timeout in seconds). Tool events match every tool; SessionStart
# matches every source; SessionEnd's default budget is 1.5 s, a timeout raises it.
HOOK_EVENTS: dict[str, tuple[str | None, int]] = {
    "SessionStart": (None, 20),
    "UserPromptSubmit": (None, 10),
    "PostToolUse": ("*", 10),
    "PostToolUseFailure": ("*", 10),
    "PreCompact": (None, 30),
    "Stop": (None, 10),
    "SessionEnd": (None, 10),
}


@dataclass(frozen=True)
class Target:
    """Where and how one client keeps its hooks and MCP servers."""

    client: str
    label: str
    hooks_file: tuple[str, str]  # (relative to a project, relative to home)
    servers_file: tuple[str, str] | None  # None: not a JSON file this merges
    events: dict[str, tuple[str | None, int]]  # event -> (matcher, timeout in seconds)
    timeout_ms: bool = False  # the client's timeouts are in milliseconds
    hook_name: bool = False  # handlers carry a "name" (Gemini CLI: /hooks enable NAME)
    server_type: bool = True  # the server entry carries "type": "stdio"
    enable: tuple[tuple[tuple[str, ...], object], ...] = ()  # settings the hooks need
    after: str = ""


TARGETS: dict[str, Target] = {
    "claude-code": Target(
        client="claude-code", label="Claude Code",
        hooks_file=(".claude/settings.json", ".claude/settings.json"),
        servers_file=(".mcp.json", ".claude.json"),
        events=HOOK_EVENTS,
        after="Restart Claude Code (or open /hooks) to pick the hooks up; approve the "
              "project's MCP server when Claude Code asks.",
    ),
    "gemini-cli": Target(
        client="gemini-cli", label="Gemini CLI",
        hooks_file=(".gemini/settings.json", ".gemini/settings.json"),
        servers_file=(".gemini/settings.json", ".gemini/settings.json"),
        events={
            "SessionStart": (None, 20),
            "BeforeAgent": (None, 10),
            "AfterTool": ("*", 10),
            "PreCompress": (None, 30),
            "AfterAgent": (None, 10),
            "SessionEnd": (None, 10),
        },
        timeout_ms=True,
        hook_name=True,
        server_type=False,
        enable=((("tools", "enableHooks"), True),),
        after="Restart Gemini CLI to pick the hooks up (/hooks panel lists them).",
    ),
    "codex": Target(
        client="codex", label="Codex",
        hooks_file=(".codex/hooks.json", ".codex/hooks.json"),
        servers_file=None,
        events={
            "SessionStart": (None, 20),
            "UserPromptSubmit": (None, 10),
            "PostToolUse": (None, 10),
            "PreCompact": (None, 30),
            "Stop": (None, 10),
        },
        after="Restart Codex to pick the hooks up (review them in /hooks). Codex keeps MCP "
              "servers in config.toml: register this one with  codex mcp add checkpoint -- "
              "{server}",
    ),
}


@dataclass
class Change:
    """What an install or uninstall did to one file."""

    path: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    backup: Path | None = None

    @property
    def changed(self) -> bool:
        """True when the file was written."""
        return bool(self.added or self.updated or self.removed)

    def lines(self) -> list[str]:
        """A human-readable report."""
        if not self.changed:
            return [f"{self.path}: unchanged"]
        out = [f"{self.path}:"]
        out += [f"  + {item}" for item in self.added]
        out += [f"  ~ {item}" for item in self.updated]
        out += [f"  - {item}" for item in self.removed]
        if self.backup is not None:
            out.append(f"  (backup: {self.backup})")
        return out


def claude_code_command(explicit: str | None = None) -> list[str]:
    """The argv that starts mcp-checkpoint: ``explicit`` (split like a shell), else the
    absolute path of the console script on PATH, else this Python with ``-m``."""
    if explicit:
        return shlex.split(explicit)
    found = shutil.which("mcp-checkpoint")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "mcp_checkpoint"]


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}; fix or move it, then install again"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object; fix or move it")
    return data


def _save(path: Path, data: dict[str, Any], change: Change) -> None:
    if not change.changed:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.bak-{stamp}")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.bak-{stamp}-{n}")
            n += 1
        shutil.copy2(path, backup)
        change.backup = backup
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _ours(handler: object, mark: str = _MARK) -> bool:
    return isinstance(handler, dict) and mark in str(handler.get("command", ""))


def _merge_hooks(
    settings: dict[str, Any], command: str, change: Change, *, remove: bool,
    target: Target | None = None,
) -> None:
    target = target or TARGETS["claude-code"]
    mark = f"hook {target.client}"

    def ours(handler: object) -> bool:
        return _ours(handler, mark)

    hooks = settings.get("hooks")
    if hooks is None:
        if remove:
            return
        hooks = settings["hooks"] = {}
    if not isinstance(hooks, dict):
        raise ConfigError(f"{change.path}: 'hooks' is not an object; fix it first")
    for event, (matcher, timeout) in target.events.items():
        groups = hooks.get(event, [])
        if not isinstance(groups, list):
            raise ConfigError(f"{change.path}: hooks.{event} is not a list; fix it first")
        wanted: dict[str, Any] = {"type": "command", "command": command,
                                  "timeout": timeout * 1000 if target.timeout_ms else timeout}
        if target.hook_name:
            wanted = {"name": f"mcp-checkpoint-{event}", **wanted}
        found = False
        kept_groups = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(handlers, list) or not any(ours(h) for h in handlers):
                kept_groups.append(group)
                continue
            if remove or found:
                group = {**group, "hooks": [h for h in handlers if not ours(h)]}
                if remove:
                    change.removed.append(f"hooks.{event}")
                if group["hooks"]:
                    kept_groups.append(group)
                continue
            found = True
            mine = [h for h in handlers if ours(h)]
            if mine != [wanted] or (matcher is not None and group.get("matcher") != matcher):
                group = {**group, "hooks": [*(h for h in handlers if not ours(h)), wanted]}
                if matcher is not None:
                    group["matcher"] = matcher
                change.updated.append(f"hooks.{event}: {command}")
            kept_groups.append(group)
        if not remove and not found:
            group = {"hooks": [wanted]}
            if matcher is not None:
                group = {"matcher": matcher, **group}
            kept_groups.append(group)
            change.added.append(f"hooks.{event}: {command}")
        if kept_groups:
            hooks[event] = kept_groups
        else:
            hooks.pop(event, None)
    if not hooks:
        settings.pop("hooks", None)


def _merge_server(
    config: dict[str, Any], argv: list[str], change: Change, *, remove: bool,
    typed: bool = True,
) -> None:
    servers = config.get("mcpServers")
    if servers is None:
        if remove:
            return
        servers = config["mcpServers"] = {}
    if not isinstance(servers, dict):
        raise ConfigError(f"{change.path}: 'mcpServers' is not an object; fix it first")
    if remove:
        if SERVER_NAME in servers:
            del servers[SERVER_NAME]
            change.removed.append(f"mcpServers.{SERVER_NAME}")
        if not servers:
            config.pop("mcpServers", None)
        return
    wanted: dict[str, Any] = {"command": argv[0], "args": [*argv[1:], "serve"]}
    if typed:
        wanted = {"type": "stdio", **wanted}
    current = servers.get(SERVER_NAME)
    if current == wanted:
        return
    servers[SERVER_NAME] = wanted
    label = f"mcpServers.{SERVER_NAME}: {shlex.join([*argv, 'serve'])}"
    (change.updated if current is not None else change.added).append(label)


def _enable(settings: dict[str, Any], target: Target, change: Change) -> None:
    """Set what the client needs for hooks to run at all (kept on uninstall: it may
    have been the user's before)."""
    for keys, value in target.enable:
        node = settings
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{change.path}: {'.'.join(keys[:-1])} is not an object")
            node = child
        if node.get(keys[-1]) != value:
            node[keys[-1]] = value
            change.updated.append(f"{'.'.join(keys)}: {json.dumps(value)}")


def install_client(
    client: str,
    *,
    project: Path | None,
    user: bool,
    uninstall: bool = False,
    budget: int | None = None,
    command: str | None = None,
    home: Path | None = None,
) -> list[Change]:
    """Install (or remove) ``client``'s hooks and, where it keeps them in a JSON file, the
    MCP server registration; returns what changed in each file."""
    target = TARGETS.get(client)
    if target is None:
        raise ConfigError(f"no installer for the client {client!r}; "
                          f"known: {', '.join(TARGETS)}")
    if user == (project is not None):
        raise ConfigError("choose one of --project DIR and --user")
    home = home or Path.home()
    if user:
        base, index = home, 1
    else:
        base = (project or Path.cwd()).expanduser().resolve()
        if not base.is_dir():
            raise ConfigError(f"--project {project}: no such directory")
        index = 0
    hooks_path = base / target.hooks_file[index]
    servers_path = base / target.servers_file[index] if target.servers_file else None
    argv = claude_code_command(command)
    hook = shlex.join([*argv, "hook", target.client])
    if budget is not None:
        hook += f" --budget {int(budget)}"

    changes = []
    settings = _load(hooks_path)
    change = Change(hooks_path)
    _merge_hooks(settings, hook, change, remove=uninstall, target=target)
    if not uninstall:
        _enable(settings, target, change)
    if servers_path == hooks_path:
        _merge_server(settings, argv, change, remove=uninstall, typed=target.server_type)
    _save(hooks_path, settings, change)
    changes.append(change)

    if servers_path is not None and servers_path != hooks_path:
        servers = _load(servers_path)
        change = Change(servers_path)
        _merge_server(servers, argv, change, remove=uninstall, typed=target.server_type)
        _save(servers_path, servers, change)
        changes.append(change)
    return changes


def install_claude_code(
    *,
    project: Path | None,
    user: bool,
    uninstall: bool = False,
    budget: int | None = None,
    command: str | None = None,
    home: Path | None = None,
) -> list[Change]:
    """Install (or remove) the MCP server registration and the hooks; returns what changed
    in each file."""
    return install_client("claude-code", project=project, user=user, uninstall=uninstall,
                          budget=budget, command=command, home=home)
