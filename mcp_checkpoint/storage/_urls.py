"""Store URLs as they may be shown: in logs, in ``doctor``, in error messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_url"]


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print or log); a URL that
    cannot be parsed is shown as its scheme only."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:
        return url.split(":", 1)[0] + "://***"
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))
