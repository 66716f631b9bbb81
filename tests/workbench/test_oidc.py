"""Sign-in with the site's OpenID Connect provider (authlib's Starlette client): a small
provider of the test's own on loopback (discovery, an authorization endpoint that signs the
user in at once, a token endpoint checking the PKCE verifier, RS256 ID tokens, JWKS). The
role comes from the provider's claim; a user without a mapped role, or a callback whose state
is not the session's, is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from adapter.intake.webhook import Receiver
from adapter.store import open_store
from adapter.web.server import WebhookServer, WebServer
from adapter.workbench.auth import Oidc, SessionRules
from adapter.workbench.web import Workbench, workbench_app


class Provider:
    """Signs in whoever ``user`` says, with ``roles``; remembers each code's PKCE challenge."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.user: dict[str, Any] = {"sub": "u-1", "preferred_username": "alice",
                                     "roles": ["billing-lead"]}  # fmt: skip
        self.codes: dict[str, dict[str, str]] = {}
        app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize), Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks),
        ])  # fmt: skip
        self.server = WebServer(app, port=0)
        self.base = f"http://127.0.0.1:{self.server.port}"

    async def discovery(self, request: Request) -> Response:
        b = self.base
        return JSONResponse({"issuer": b, "authorization_endpoint": f"{b}/authorize",
                             "token_endpoint": f"{b}/token", "jwks_uri": f"{b}/jwks",
                             "response_types_supported": ["code"],
                             "subject_types_supported": ["public"],
                             "id_token_signing_alg_values_supported": ["RS256"]})  # fmt: skip

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q.get("nonce", ""),
                            "client": q["client_id"], "redirect": q["redirect_uri"]}  # fmt: skip
        return RedirectResponse(
            f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
        )

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form["code"]), None)
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        if grant is None or digest.decode() != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {"iss": self.base, "aud": grant["client"], "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"], **self.user}  # fmt: skip
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                             "id_token": token})  # fmt: skip

    async def jwks(self, request: Request) -> Response:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return JSONResponse({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})


@pytest.fixture
def sites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Provider, str]]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain HTTP on loopback only
    provider = Provider()
    provider.server.start()
    store = open_store(tmp_path / "o.db")
    oidc = Oidc(issuer=provider.base, client_id="workbench", client_secret="s3cret",
                roles=(("billing-staff", "biller"), ("billing-lead", "manager")))  # fmt: skip
    wb = Workbench(store=store, session=SessionRules(secret="o" * 40, secure=False),
                   resync=lambda day: None, audit=lambda: 0, oidc=oidc)  # fmt: skip
    server = WebhookServer(Receiver(lambda n: None, secret="x"), port=0,
                           mounts=[("/review", workbench_app(wb))])  # fmt: skip
    server.start()
    try:
        yield provider, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        provider.server.stop()
        store.close()


def test_sign_in_with_the_provider_takes_the_role_from_its_claim(
    sites: tuple[Provider, str],
) -> None:
    provider, base = sites
    http = requests.Session()
    answer = http.get(f"{base}/review/oidc/login", timeout=10)
    assert answer.status_code == 200 and answer.url.rstrip("/").endswith("/review")
    assert 'alice <span class="role">(manager)</span>' in answer.text
    # no mapped role: refused
    provider.user = {"sub": "u-2", "preferred_username": "bob", "roles": ["nurse"]}
    other = requests.Session()
    refused = other.get(f"{base}/review/oidc/login", timeout=10)
    assert refused.status_code == 403
    assert other.get(f"{base}/review/", timeout=10, allow_redirects=False).status_code == 303


def test_a_callback_not_started_here_is_refused(sites: tuple[Provider, str]) -> None:
    _, base = sites
    http = requests.Session()
    forged = http.get(f"{base}/review/oidc/callback?code=x&state=not-ours", timeout=10)
    assert forged.status_code == 401
    assert http.get(f"{base}/review/", timeout=10, allow_redirects=False).status_code == 303
