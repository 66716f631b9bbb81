"""The CDS client's JWT (CDS Hooks 2.0 "Trusting CDS Clients"): signed by an allow-listed
issuer (its public key in the config, or its JWKS URL), ``aud`` the service's URL, ``exp`` at
most five minutes out, a ``jti`` never seen before, ``sub`` the client id (the configured one,
when set). A ``jku`` header is followed only when it is the issuer's configured JWKS URL (any
other is refused: the keys come from the allow-list, never from the token). Anything else is
refused (401)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHMS = ["ES384", "RS384", "ES256", "RS256"]
LEEWAY = 30.0


class TokenError(Exception):
    """Why a request's token is refused (the reason is safe to log: no claims' values)."""


@dataclass(frozen=True, slots=True)
class CdsClient:
    iss: str
    public_key: str | None = None  # PEM
    jwks_url: str | None = None
    sub: str | None = None


@functools.cache
def _jwks(url: str) -> jwt.PyJWKClient:
    """One JWKS client per URL (it caches the keys it fetched, and fetches again for a new
    ``kid``)."""
    return jwt.PyJWKClient(url, timeout=5, cache_keys=True)


def verify(
    authorization: str | None,
    *,
    clients: Mapping[str, CdsClient],
    audience: str,
    remember: Callable[[str, float], bool],
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The verified claims of ``Authorization: Bearer <jwt>``; a ``TokenError`` otherwise.
    ``remember(key, until)`` records a jti and says whether it was new."""
    if not authorization or not authorization.startswith("Bearer "):
        raise TokenError("no bearer token")
    token = authorization[len("Bearer ") :].strip()
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenError("not a JWT") from None
    if header.get("alg") not in ALGORITHMS:
        raise TokenError("algorithm not allowed")
    client = clients.get(str(unverified.get("iss")))
    if client is None:
        raise TokenError("issuer not allowed")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:  # only the issuer's allow-listed JWKS
        raise TokenError("jku not allowed for the issuer")
    try:
        key: Any = client.public_key
        if key is None and client.jwks_url:
            key = _jwks(client.jwks_url).get_signing_key_from_jwt(token).key
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=ALGORITHMS, audience=audience, issuer=client.iss,
            leeway=LEEWAY, options={"require": ["exp", "iat", "jti", "iss", "aud", "sub"]},
        )  # fmt: skip
    except jwt.PyJWTError as err:
        raise TokenError(f"token refused ({type(err).__name__})") from None
    if float(claims["exp"]) > now() + 300 + LEEWAY:
        raise TokenError("token lives longer than five minutes")
    if client.sub is not None and claims.get("sub") != client.sub:
        raise TokenError("sub is not the client's")
    if not remember(f"{client.iss}|{claims['jti']}", float(claims["exp"])):
        raise TokenError("jti used before")
    return claims
