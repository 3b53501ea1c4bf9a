"""Remote auth that OAuth-capable clients follow, with the TypeScript SDK's OAuth transport.

Static tokens only: a client without credentials stops with a 401, and an OAuth client
(dynamic registration, the default of Claude Code and VS Code) stops with the server's JSON
OAuth error naming what to do, never a parse error. With JWT verification configured: the
protected-resource metadata names the issuer, and the client gets a token from a local test
issuer (client_credentials) and runs tools with it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.http_helpers import HttpServer
from tests.e2e.node_helpers import NODE_DIR, node_clients

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SCRIPT = NODE_DIR / "oauth-client.mjs"
CLIENT_ID, CLIENT_SECRET = "e2e-client", "e2e-secret"


class LocalIssuer:
    """A minimal OAuth authorization server on 127.0.0.1: RFC 8414 metadata, a JWKS, and a
    token endpoint for the client_credentials grant (one client), signing RS256 JWTs with
    the tenant and scopes mcp-checkpoint reads."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.url = ""
        self.issued: list[dict[str, Any]] = []

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def token(self, form: dict[str, list[str]], authorization: str) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != ["client_credentials"] or not form.get("resource"):
            return 400, {"error": "invalid_request"}
        now = int(time.time())
        claims = {"iss": self.url, "aud": form["resource"][0], "sub": CLIENT_ID, "iat": now,
                  "exp": now + 300, "tenant": "oauth-tenant", "scope": "read write"}
        self.issued.append(claims)
        signed = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        return 200, {"access_token": signed, "token_type": "Bearer", "expires_in": 300}


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    found = LocalIssuer()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path == "/.well-known/oauth-authorization-server":
                self.answer(200, found.metadata())
            elif self.path == "/jwks":
                self.answer(200, found.jwks)
            else:
                self.answer(404, {"error": "invalid_request"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if self.path != "/token":
                self.answer(404, {"error": "invalid_request"})
                return
            self.answer(*found.token(form, self.headers.get("authorization", "")))

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        httpd.shutdown()
        httpd.server_close()


async def run_script(*args: str) -> dict[str, Any]:
    node = node_clients()
    with anyio.fail_after(120):
        done = await anyio.run_process([str(node), str(SCRIPT), *args], check=False,
                                       cwd=NODE_DIR)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, err[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


async def test_static_tokens_never_send_an_oauth_client_into_a_dead_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with HttpServer(data) as server:
        found = await run_script("static", server.url)
        log = server.log()

    assert found["bare"]["code"] == 401, found  # no credentials: a plain 401
    message = found["oauth"]["message"]
    assert "mcp-checkpoint runs no OAuth authorization server" in message, found
    assert "Authorization: Bearer mcpck_" in message
    assert "Traceback" not in log


async def test_an_oauth_client_signs_in_at_the_configured_issuer(
    tmp_path: Path, issuer: LocalIssuer
) -> None:
    data = tmp_path / "data"
    env = {"MCP_CHECKPOINT_JWT__ISSUER": issuer.url,
           "MCP_CHECKPOINT_JWT__JWKS_URL": f"{issuer.url}/jwks"}
    async with HttpServer(data, **env) as server:
        async with httpx2.AsyncClient() as http:
            response = await http.post(server.url, content=b"{}",
                                       headers={"content-type": "application/json"})
            assert response.status_code == 401
            challenge = response.headers["www-authenticate"]
            metadata = (await http.get(challenge.split('resource_metadata="')[1].rstrip('"'))
                        ).json()
        assert [s.rstrip("/") for s in metadata["authorization_servers"]] == [issuer.url]

        found = await run_script("issuer", server.url, CLIENT_ID, CLIENT_SECRET)

    assert found == {"runs": ["o1"], "tokenType": "Bearer"}
    assert [c["aud"] for c in issuer.issued] == [server.url]  # the resource it asked for
