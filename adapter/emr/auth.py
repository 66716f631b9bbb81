"""Authentication for FHIR requests: none, static bearer, basic, SMART Backend Services.

SMART Backend Services (client_credentials with a ``private_key_jwt`` client assertion): the
token endpoint comes from ``{base}/.well-known/smart-configuration`` unless given; the assertion
is signed RS384 or ES384 (RS256/ES256 accepted too) with a PEM or JWK private key; the access
token is cached until shortly before it expires, and the client refreshes it once when a request
is answered 401. Secrets never appear in exceptions or logs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import jwt
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from requests.auth import _basic_auth_str

from adapter.errors import ConfigError, FatalServerError, TemporaryServerError

Clock = Callable[[], float]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384", "RS256", "ES256")


class Auth(Protocol):
    """What the client asks of an authentication method."""

    def headers(self, session: requests.Session) -> dict[str, str]: ...

    def invalidate(self) -> bool:
        """Forget a cached credential after a 401; True if a retry may now succeed."""
        ...


class NoAuth:
    def headers(self, session: requests.Session) -> dict[str, str]:
        return {}

    def invalidate(self) -> bool:
        return False


@dataclass(frozen=True)
class BearerAuth:
    token: str = field(repr=False)

    def headers(self, session: requests.Session) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def invalidate(self) -> bool:
        return False


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)

    def headers(self, session: requests.Session) -> dict[str, str]:
        return {"Authorization": _basic_auth_str(self.username, self.password)}

    def invalidate(self) -> bool:
        return False


def load_private_key(source: str | Path) -> tuple[Any, str | None]:
    """A signing key from a PEM file or a JWK (JSON) file: (key, kid from the JWK if any)."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"private key {path}: cannot be read ({err.strerror})") from None
    try:
        if text.lstrip().startswith("{"):
            jwk = json.loads(text)
            if "keys" in jwk:
                jwk = jwk["keys"][0]
            return jwt.PyJWK.from_dict(jwk).key, jwk.get("kid")
        return load_pem_private_key(text.encode(), password=None), None
    except (ValueError, TypeError, KeyError, jwt.PyJWTError) as err:
        raise ConfigError(
            f"private key {path}: not a usable PEM or JWK private key ({err})"
        ) from None


class SmartBackendAuth:
    """SMART Backend Services: client_credentials with a signed JWT client assertion."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        private_key: str | Path,
        *,
        alg: Literal["RS384", "ES384", "RS256", "ES256"] = "RS384",
        kid: str | None = None,
        scope: str = "system/Procedure.read system/Encounter.read system/*.read system/*.write",
        token_url: str | None = None,
        jku: str | None = None,
        timeout: float = 30.0,
        clock: Clock = time.time,
        refresh_margin: float = 60.0,
    ) -> None:
        if alg not in ALGORITHMS:
            raise ConfigError(f"SMART alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.key, jwk_kid = load_private_key(private_key)
        self.alg = alg
        self.kid = kid or jwk_kid
        self.scope = scope
        self.token_url = token_url
        self.jku = jku
        self.timeout = timeout
        self.clock = clock
        self.refresh_margin = refresh_margin
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, alg={self.alg!r})"

    def discover(self, session: requests.Session) -> str:
        url = f"{self.base_url}/.well-known/smart-configuration"
        try:
            resp = session.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
        except requests.RequestException as err:
            raise TemporaryServerError(
                f"SMART discovery at {url} failed: {type(err).__name__}"
            ) from None
        if resp.status_code != 200:
            raise FatalServerError(
                f"SMART discovery at {url} answered {resp.status_code}", status=resp.status_code
            )
        try:
            endpoint = resp.json()["token_endpoint"]
        except (ValueError, KeyError, TypeError):
            raise FatalServerError(f"{url} names no token_endpoint") from None
        if not isinstance(endpoint, str):
            raise FatalServerError(f"{url} names no token_endpoint")
        return endpoint

    def assertion(self, token_url: str) -> str:
        now = int(self.clock())
        headers: dict[str, Any] = {"typ": "JWT"}
        if self.kid:
            headers["kid"] = self.kid
        if self.jku:
            headers["jku"] = self.jku
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + 240,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    def headers(self, session: requests.Session) -> dict[str, str]:
        with self._lock:
            if self._token is None or self.clock() >= self._expires - self.refresh_margin:
                self._fetch(session)
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def _fetch(self, session: requests.Session) -> None:
        if self.token_url is None:
            self.token_url = self.discover(session)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(self.token_url),
        }
        try:
            resp = session.post(self.token_url, data=form, timeout=self.timeout)
        except requests.RequestException as err:
            raise TemporaryServerError(
                f"token request to {self.token_url} failed: {type(err).__name__}"
            ) from None
        if resp.status_code != 200:
            try:
                body = resp.json()
                why = f"{body.get('error')}: {body.get('error_description', '')}".strip(": ")
            except ValueError:
                why = resp.text[:200]
            error = TemporaryServerError if resp.status_code >= 500 else FatalServerError
            raise error(
                f"SMART token request refused ({resp.status_code}) for client "
                f"{self.client_id!r}: {why}",
                status=resp.status_code,
            )
        body = resp.json()
        token = body.get("access_token")
        if not isinstance(token, str):
            raise FatalServerError("SMART token response has no access_token")
        self._token = token
        expires_in = body.get("expires_in")
        self._expires = self.clock() + (
            float(expires_in) if isinstance(expires_in, int | float) else 300.0
        )
