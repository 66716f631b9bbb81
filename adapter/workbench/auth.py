"""Who may use the workbench: local users with scrypt-hashed passwords (for small sites), or
the site's OpenID Connect provider (``authlib``); roles; the session's limits.

Roles, each with what the one before may do: ``viewer`` reads the queue, the days and the
reports; ``biller`` overrides lines, re-runs days, marks them done and reverts overrides;
``manager`` also releases administrative holds (the clocks), holds or unholds days and
reverts releases and holds;
``admin`` also manages users.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

ROLES = ("viewer", "biller", "manager", "admin")
#: what each decision needs
NEEDS = {
    "override": "biller",
    "rerun": "biller",
    "done": "biller",
    "reopen": "biller",
    "revert": "biller",
    "release": "manager",
    "hold": "manager",
    "unhold": "manager",
}
_N, _R, _P = 2**14, 8, 1  # scrypt's cost (about 16 MiB, tens of ms): OWASP's minimum


def can(role: str, need: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(need)


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("a password needs at least 12 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(
        [
            "scrypt",
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


#: a hash to check a password against when the user does not exist (the same time either way)
DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


@dataclass(frozen=True, slots=True, kw_only=True)
class Oidc:
    """The site's OpenID Connect provider: the role comes from a claim (``role_claim``, a
    string or a list), mapped by ``roles`` (the provider's value -> a workbench role); a user
    with no mapped role is refused."""

    issuer: str  # its discovery document: {issuer}/.well-known/openid-configuration
    client_id: str
    client_secret: str
    role_claim: str = "roles"
    roles: tuple[tuple[str, str], ...] = ()
    scope: str = "openid profile email"

    def role_of(self, claims: dict[str, object]) -> str | None:
        value = claims.get(self.role_claim)
        given = (
            [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
        )
        mapped = [r for v, r in self.roles if v in given and r in ROLES]
        return max(mapped, key=ROLES.index) if mapped else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRules:
    secret: str  # signs the session cookie (at least 32 characters)
    max_age: int = 8 * 3600  # seconds from sign-in
    idle: int = 30 * 60  # seconds without a request
    secure: bool = True  # the cookie only over HTTPS (off for a plain-HTTP test on loopback)
