"""OAuth access tokens (JWTs) checked against an issuer's JWKS, served by a local HTTP
server from a freshly generated RSA key."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mcp_checkpoint.config import JwtSettings
from mcp_checkpoint.server.auth import CallerToken, JwtTokenVerifier
from tests.e2e.conftest import run_cli
from tests.e2e.http_helpers import HttpServer, connect
from tests.e2e.test_http import loop

pytestmark = pytest.mark.anyio

ISSUER = "https://issuer.test"
AUDIENCE = "https://mcp.test/mcp"


class Issuer:
    """An RSA signing key and a JWKS endpoint publishing its public half."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.url = ""

    def token(self, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now + 300,
                "iat": now, "tenant": "acme", "scope": "read write", **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    payload = json.dumps(found.jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield found
    httpd.shutdown()
    httpd.server_close()


def verifier(issuer: Issuer, **extra: Any) -> JwtTokenVerifier:
    settings = JwtSettings(issuer=ISSUER, jwks_url=issuer.url, **extra)
    return JwtTokenVerifier(settings, AUDIENCE)


async def test_valid_jwt_gives_tenant_and_scopes(issuer: Issuer) -> None:
    found = await verifier(issuer).verify_token(issuer.token())
    assert isinstance(found, CallerToken)
    assert found.tenant == "acme"
    assert found.scopes == ["read", "write"]
    assert found.subject == "user-1"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": "https://evil.test"}, id="wrong-issuer"),
        pytest.param({"aud": "https://other.test/mcp"}, id="wrong-audience"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 3600}, id="not-yet-valid"),
        pytest.param({"tenant": None}, id="no-tenant"),
        pytest.param({"tenant": "__healthz__"}, id="reserved-tenant"),
        pytest.param({"tenant": "acme\n"}, id="tenant-with-newline"),
        pytest.param({"tenant": "ac\x1b[31mme"}, id="tenant-with-escape"),
        pytest.param({"tenant": "x" * 65}, id="tenant-too-long"),
        pytest.param({"exp": None}, id="no-expiry"),
    ],
)
async def test_invalid_jwts_are_refused(issuer: Issuer, claims: dict[str, Any]) -> None:
    assert await verifier(issuer).verify_token(issuer.token(**claims)) is None


async def test_jwt_signed_by_another_key_is_refused(issuer: Issuer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await verifier(issuer).verify_token(issuer.token(key=other)) is None


async def test_scope_prefix_and_list_claims(issuer: Issuer) -> None:
    v = verifier(issuer, scope_prefix="mcpck:", scope_claim="scp", tenant_claim="org")
    token = issuer.token(scp=["mcpck:read", "write", "mcpck:admin"], org="o1")
    found = await v.verify_token(token)
    assert isinstance(found, CallerToken)
    assert found.tenant == "o1"
    assert found.scopes == ["read"]  # unprefixed and unknown scopes are not ours


@pytest.mark.e2e
async def test_server_accepts_jwts_and_points_401s_at_the_issuer(
    tmp_path: Path, issuer: Issuer
) -> None:
    data = tmp_path / "data"
    env = {
        "MCP_CHECKPOINT_JWT__ISSUER": ISSUER,
        "MCP_CHECKPOINT_JWT__JWKS_URL": issuer.url,
        "MCP_CHECKPOINT_JWT__AUDIENCE": AUDIENCE,
    }
    async with HttpServer(data, **env) as server:
        async with connect(server.url, issuer.token()) as client:
            await loop(client)
        async with httpx2.AsyncClient() as http:
            response = await http.post(server.url, content=b"{}",
                                       headers={"content-type": "application/json"})
            assert response.status_code == 401
            challenge = response.headers["www-authenticate"]
            metadata_url = challenge.split('resource_metadata="')[1].rstrip('"')
            metadata = (await http.get(metadata_url)).json()
            assert metadata["authorization_servers"] == [ISSUER]
            expired = issuer.token(exp=int(time.time()) - 3600)
            response = await http.post(server.url, content=b"{}", headers={
                "content-type": "application/json", "authorization": f"Bearer {expired}"})
            assert response.status_code == 401
    code, out, _ = await run_cli("runs", "list", "--json", "--tenant", "acme", env=server.env)
    assert code == 0
    assert [r["run_id"] for r in json.loads(out)] == ["r1"]
