"""Wiring a client to mcp-checkpoint: merge the MCP server and the hooks into its settings.

For Claude Code (see docs/claude-code.md for the documented locations):

- ``--project DIR``: hooks into ``DIR/.claude/settings.json``, the server into
  ``DIR/.mcp.json`` (project scope, shareable);
- ``--user``: hooks into ``~/.claude/settings.json``, the server into ``~/.claude.json``
  (user scope, every project).

A merge keeps everything else in the files, is idempotent (a second install changes
nothing), writes a backup of a file before changing it and reports each change. Our
entries are recognised by their command (``... hook claude-code``) and the server name.
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

__all__ = ["HOOK_EVENTS", "SERVER_NAME", "Change", "claude_code_command", "install_claude_code"]

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


def _ours(handler: object) -> bool:
    return isinstance(handler, dict) and _MARK in str(handler.get("command", ""))


def _merge_hooks(
    settings: dict[str, Any], command: str, change: Change, *, remove: bool
) -> None:
    hooks = settings.get("hooks")
    if hooks is None:
        if remove:
            return
        hooks = settings["hooks"] = {}
    if not isinstance(hooks, dict):
        raise ConfigError(f"{change.path}: 'hooks' is not an object; fix it first")
    for event, (matcher, timeout) in HOOK_EVENTS.items():
        groups = hooks.get(event, [])
        if not isinstance(groups, list):
            raise ConfigError(f"{change.path}: hooks.{event} is not a list; fix it first")
        wanted: dict[str, Any] = {"type": "command", "command": command, "timeout": timeout}
        found = False
        kept_groups = []
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if not isinstance(handlers, list) or not any(_ours(h) for h in handlers):
                kept_groups.append(group)
                continue
            if remove or found:
                group = {**group, "hooks": [h for h in handlers if not _ours(h)]}
                if remove:
                    change.removed.append(f"hooks.{event}")
                if group["hooks"]:
                    kept_groups.append(group)
                continue
            found = True
            mine = [h for h in handlers if _ours(h)]
            if mine != [wanted] or (matcher is not None and group.get("matcher") != matcher):
                group = {**group, "hooks": [*(h for h in handlers if not _ours(h)), wanted]}
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
    config: dict[str, Any], argv: list[str], change: Change, *, remove: bool
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
    wanted = {"type": "stdio", "command": argv[0], "args": [*argv[1:], "serve"]}
    current = servers.get(SERVER_NAME)
    if current == wanted:
        return
    servers[SERVER_NAME] = wanted
    label = f"mcpServers.{SERVER_NAME}: {shlex.join([*argv, 'serve'])}"
    (change.updated if current is not None else change.added).append(label)


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
    if user == (project is not None):
        raise ConfigError("choose one of --project DIR and --user")
    home = home or Path.home()
    if user:
        settings_path = home / ".claude" / "settings.json"
        servers_path = home / ".claude.json"
    else:
        root = (project or Path.cwd()).expanduser().resolve()
        if not root.is_dir():
            raise ConfigError(f"--project {project}: no such directory")
        settings_path = root / ".claude" / "settings.json"
        servers_path = root / ".mcp.json"
    argv = claude_code_command(command)
    hook = shlex.join([*argv, "hook", "claude-code"])
    if budget is not None:
        hook += f" --budget {int(budget)}"

    changes = []
    settings = _load(settings_path)
    change = Change(settings_path)
    _merge_hooks(settings, hook, change, remove=uninstall)
    _save(settings_path, settings, change)
    changes.append(change)

    servers = _load(servers_path)
    change = Change(servers_path)
    _merge_server(servers, argv, change, remove=uninstall)
    _save(servers_path, servers, change)
    changes.append(change)
    return changes
