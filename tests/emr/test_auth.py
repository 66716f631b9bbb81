"""Authentication against the real FHIR server's token endpoint and auth schemes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter.emr.auth import BasicAuth, BearerAuth, SmartBackendAuth
from adapter.emr.client import FhirClient, RetryPolicy
from adapter.errors import ConfigError, FatalServerError
from tests import fhir_server
from tests.fhir_server import FhirServer


def write_keys(tmp: Path, name: str, kind: str) -> tuple[Path, Path]:
    key = (
        rsa.generate_private_key(65537, 2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP384R1())
    )
    private = tmp / f"{name}.pem"
    public = tmp / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )  # fmt: skip
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    )  # fmt: skip
    return private, public


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FhirServer, Path]]:
    tmp = tmp_path_factory.mktemp("smart")
    _, rsa_pub = write_keys(tmp, "rsa", "rsa")
    _, ec_pub = write_keys(tmp, "ec", "ec")
    settings = (
        "server_auth:\n"
        "  types: [smart, bearer, basic]\n"
        "  token_lifetime: 2\n"
        "  tokens: [static-token-123]\n"
        "  users: {billing: s3cret}\n"
        "  smart_clients:\n"
        f"    - {{client_id: charge-adapter, public_key_path: {rsa_pub}, scopes: 'system/*.*'}}\n"
        f"    - {{client_id: charge-adapter-ec, public_key_path: {ec_pub}, scopes: 'system/*.*'}}\n"
    )
    server = fhir_server.start(tmp, settings)
    try:
        yield server, tmp
    finally:
        server.stop()


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.token_requests = 0

    def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        if str(url).endswith("/auth/token"):
            self.token_requests += 1
        return super().request(method, url, *args, **kwargs)


def test_unauthenticated_requests_are_refused(secured: tuple[FhirServer, Path]) -> None:
    server, _ = secured
    with pytest.raises(FatalServerError) as err:
        FhirClient(server.base).read("Patient", "x")
    assert err.value.status == 401


def test_smart_backend_rs384_with_discovery_and_token_cache(
    secured: tuple[FhirServer, Path],
) -> None:
    server, tmp = secured
    auth = SmartBackendAuth(server.base, "charge-adapter", tmp / "rsa.pem", alg="RS384",
                            scope="system/*.read", refresh_margin=0)  # fmt: skip
    session = CountingSession()
    client = FhirClient(server.base, auth, session=session)
    assert list(client.search("Patient", {"_count": "1"})) == []
    assert list(client.search("Procedure", {"_count": "1"})) == []
    assert session.token_requests == 1  # cached
    assert auth.token_url and auth.token_url.endswith("/auth/token")


def test_expired_token_is_refreshed_once_on_401(secured: tuple[FhirServer, Path]) -> None:
    server, tmp = secured
    # a negative margin keeps the token in use past its expiry: the server (2 s lifetime) says
    # 401 "expired"; the client refreshes once, without counting a retry, and succeeds
    auth = SmartBackendAuth(server.base, "charge-adapter", tmp / "rsa.pem", refresh_margin=-100)
    session = CountingSession()
    client = FhirClient(server.base, auth, session=session)
    assert list(client.search("Patient", {"_count": "1"})) == []
    time.sleep(3)
    assert list(client.search("Patient", {"_count": "1"})) == []
    assert session.token_requests == 2 and client.retries == 0


def test_smart_backend_es384_with_a_jwk_key(secured: tuple[FhirServer, Path]) -> None:
    server, tmp = secured
    pem = (tmp / "ec.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))  # type: ignore[arg-type]
    jwk.update({"kid": "ec-1", "alg": "ES384"})
    (tmp / "ec.jwk.json").write_text(json.dumps({"keys": [jwk]}))
    auth = SmartBackendAuth(server.base, "charge-adapter-ec", tmp / "ec.jwk.json", alg="ES384")
    assert list(FhirClient(server.base, auth).search("Patient", {"_count": "1"})) == []
    assert auth.kid == "ec-1"


def test_a_wrong_key_is_refused_with_a_clear_error(secured: tuple[FhirServer, Path]) -> None:
    server, tmp = secured
    wrong, _ = write_keys(tmp, "wrong", "rsa")
    auth = SmartBackendAuth(server.base, "charge-adapter", wrong)
    client = FhirClient(server.base, auth, retry=RetryPolicy(sleep=lambda s: None))
    with pytest.raises(FatalServerError) as err:
        client.read("Patient", "x")
    message = str(err.value)
    assert "SMART token request refused (401)" in message and "charge-adapter" in message
    assert "invalid_client" in message
    assert "BEGIN" not in message  # no key material in errors


def test_unknown_client_and_unreadable_key(secured: tuple[FhirServer, Path]) -> None:
    server, tmp = secured
    auth = SmartBackendAuth(server.base, "nobody", tmp / "rsa.pem")
    with pytest.raises(FatalServerError, match="Unknown client_id"):
        FhirClient(server.base, auth).read("Patient", "x")
    (tmp / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="not a usable PEM or JWK"):
        SmartBackendAuth(server.base, "charge-adapter", tmp / "junk.pem")
    with pytest.raises(ConfigError, match="cannot be read"):
        SmartBackendAuth(server.base, "charge-adapter", tmp / "missing.pem")


def test_static_bearer_and_basic(secured: tuple[FhirServer, Path]) -> None:
    server, _ = secured
    assert list(FhirClient(server.base, BearerAuth("static-token-123")).search("Patient", {})) == []
    assert list(FhirClient(server.base, BasicAuth("billing", "s3cret")).search("Patient", {})) == []
    with pytest.raises(FatalServerError) as err:
        FhirClient(server.base, BasicAuth("billing", "wrong")).read("Patient", "x")
    assert err.value.status == 401
    assert "wrong" not in repr(BasicAuth("billing", "wrong"))
