"""Who may use the web view, and what protects it inside a browser.

- **Who:** a ``Verify`` callback turns a bearer token into a ``UiCaller`` (tenant and
  scopes). The token comes from an ``Authorization: Bearer`` header, or from the
  ``mcpc_token`` cookie that the login form sets (HttpOnly, SameSite=Strict, path
  ``/ui``): a browser cannot send a header on a plain link. Without a ``Verify`` (the
  local ``mcp-checkpoint ui`` on a loopback address) every request is the configured
  tenant's, with every scope. ``read`` lets a caller look, ``write`` act.
- **Cross-site requests:** every form that changes something carries a CSRF token that
  must equal the ``mcpc_csrf`` cookie (double submit; SameSite=Strict keeps the cookie
  off other sites' requests and no other site can read it), and a request whose
  ``Sec-Fetch-Site`` or ``Origin`` says it came from another site is refused.
- **What a page may do:** a strict Content-Security-Policy (no script at all, styles and
  images only from the view itself, forms only to it, no framing), ``nosniff``, and
  the referrer only for the view's own pages (other sites never see a run id in it;
  with no referrer at all, browsers send ``Origin: null`` on the view's own forms).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSP",
    "CSRF_COOKIE",
    "TOKEN_COOKIE",
    "SecurityHeaders",
    "UiCaller",
    "Verify",
    "check_csrf",
    "csrf_token",
    "loopback_host",
    "same_origin",
]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CSRF_COOKIE = "mcpc_csrf"
TOKEN_COOKIE = "mcpc_token"  # noqa: S105 - a cookie name, not a secret


@dataclass(frozen=True)
class UiCaller:
    """Who is looking: their tenant and scopes (``read``, ``write``)."""

    tenant: str
    scopes: frozenset[str]

    @property
    def can_write(self) -> bool:
        """True when the caller may act (commit a batch), not only look."""
        return "write" in self.scopes


Verify = Callable[[str], Awaitable[UiCaller | None]]


class SecurityHeaders:
    """Adds the view's security headers to every response it sends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> tuple[str, bool]:
    """The CSRF token of this browser, and whether it is new (then the response must set
    the cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or one too old to say: the CSRF token decides
    if origin == "null":
        return False
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def check_csrf(request: Request, submitted: str | None) -> bool:
    """Whether a form post carries this browser's CSRF token and comes from this site."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not submitted or not same_origin(request):
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def loopback_host(request: Request) -> bool:
    """Whether the request's Host names this machine's loopback interface."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]").lower() in ("127.0.0.1", "localhost", "::1")
