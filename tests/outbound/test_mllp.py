"""The MLLP client against real sockets on loopback: plain and TLS (a CA the test makes, the
server's certificate verified), a receiver that never answers (the timeout, not a hang), one
that is away, and answers that are no ACK."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapter.hl7v2 import mllp
from tests.fhir_server import free_port

MESSAGE = "MSH|^~\\&|A||B||20260801120000||DFT^P03^DFT_P03|CTRL1|P|2.5.1\rEVN|P03|20260801\r"
ACK = "\x0bMSH|^~\\&|B||A||20260801120000||ACK|X1|P|2.5.1\rMSA|AA|CTRL1\r\x1c\r"


def _serve(listener: socket.socket, answer: bytes | None, context: ssl.SSLContext | None) -> None:
    """Accept one connection, read one framed message, answer (or stay silent)."""
    conn, _ = listener.accept()
    with conn, context.wrap_socket(conn, server_side=True) if context else conn as sock:
        data = b""
        while b"\x1c\r" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        if answer is not None:
            sock.sendall(answer)
        else:
            threading.Event().wait(2)


def _listener() -> tuple[socket.socket, int]:
    port = free_port()
    s = socket.create_server(("127.0.0.1", port))
    return s, port


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A CA and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    paths = (tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    yield paths


def test_a_message_and_its_ack() -> None:
    listener, port = _listener()
    with listener:
        t = threading.Thread(target=_serve, args=(listener, ACK.encode(), None))
        t.start()
        ack = mllp.send("127.0.0.1", port, MESSAGE, timeout=5)
        t.join()
    assert ack.accepted and ack.control == "CTRL1" and not ack.temporary


def test_tls_verifies_the_receiver(tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    listener, port = _listener()
    with listener:
        t = threading.Thread(target=_serve, args=(listener, ACK.encode(), server))
        t.start()
        ack = mllp.send("127.0.0.1", port, MESSAGE, tls=True, cafile=str(ca), timeout=5)
        t.join()
    assert ack.accepted
    # without the site's CA the receiver's certificate is not trusted: refused, not sent
    listener, port = _listener()
    with listener:
        t = threading.Thread(target=lambda: _accept_and_drop(listener, server))
        t.start()
        with pytest.raises(mllp.MllpError, match=r"CERTIFICATE_VERIFY_FAILED|SSL"):
            mllp.send("127.0.0.1", port, MESSAGE, tls=True, timeout=5)
        t.join()


def _accept_and_drop(listener: socket.socket, context: ssl.SSLContext) -> None:
    conn, _ = listener.accept()
    with conn, contextlib.suppress(ssl.SSLError, OSError):
        context.wrap_socket(conn, server_side=True).close()


def test_a_silent_or_absent_receiver_is_an_error_not_a_hang() -> None:
    listener, port = _listener()
    with listener:
        t = threading.Thread(target=_serve, args=(listener, None, None))
        t.start()
        with pytest.raises(mllp.MllpError, match=r"timed out|TimeoutError"):
            mllp.send("127.0.0.1", port, MESSAGE, timeout=0.5)
        t.join()
    with pytest.raises(mllp.MllpError, match=r"Connection refused|ConnectionRefused"):
        mllp.send("127.0.0.1", free_port(), MESSAGE, timeout=2)


def test_answers_that_are_no_ack() -> None:
    with pytest.raises(mllp.MllpError, match="no MSA"):
        mllp.parse_ack("MSH|^~\\&|B\rPID|1")
    ae = mllp.parse_ack("MSH|^~\\&|B\rMSA|AE|C9|locked\rERR|||206^record locked^HL70357|E")
    assert not ae.accepted and ae.temporary and ae.error == "206"
    ar = mllp.parse_ack("MSH|^~\\&|B\rMSA|AR|C9|bad\rERR|||103^table value^HL70357|E")
    assert not ar.accepted and not ar.temporary
    dup = mllp.parse_ack("MSH|^~\\&|B\rMSA|AE|C9|dup\rERR|||205^duplicate^HL70357|E")
    assert dup.accepted  # the receiver has it already


def test_an_ack_that_is_not_utf8_is_still_read() -> None:
    """(review) a receiver answering in Latin-1 does not crash the delivery loop."""
    listener, port = _listener()
    latin = ACK.replace("MSA|AA|CTRL1", "MSA|AA|CTRL1|re\xe7u").encode("latin-1")
    with listener:
        t = threading.Thread(target=_serve, args=(listener, latin, None))
        t.start()
        ack = mllp.send("127.0.0.1", port, MESSAGE, timeout=5)
        t.join()
    assert ack.accepted and ack.control == "CTRL1"
