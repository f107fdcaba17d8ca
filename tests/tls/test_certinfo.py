"""cert_info and the cipher-name table."""

from __future__ import annotations

import datetime as dt

import pytest

from isthmus.dataplane.tls import (
    IANA_TO_OPENSSL,
    MOZILLA_INTERMEDIATE_CIPHERS,
    TLSConfigError,
    cert_chain_info,
    cert_info,
    openssl_cipher_names,
    server_context,
)
from isthmus.snapshot.types import DownstreamTls

from .conftest import Pki
from .handshake import client_ctx, handshake


def test_cert_info_facts(pki: Pki) -> None:
    info = cert_info(pki.alice.cert_pem)
    assert info.serial == pki.alice.serial
    assert info.serial_hex == format(pki.alice.serial, "x")
    assert info.subject == "CN=alice"
    assert info.issuer == "CN=Test CA"
    assert info.sans == ("alice.test", "spiffe://td/ns/default/sa/alice")
    assert info.key_type == "ECDSA"
    assert info.not_before < dt.datetime.now(dt.UTC) < info.not_after
    assert info.valid_at()
    assert cert_info(pki.server_rsa.cert_pem).key_type == "RSA"
    assert cert_info(pki.upstream.cert_pem).sans == ("upstream.test", "api.internal", "127.0.0.1")


def test_cert_info_validity(pki: Pki) -> None:
    assert not cert_info(pki.expired.cert_pem).valid_at()
    future = pki.ca.not_yet_valid("later")
    info = cert_info(future.cert_pem)
    assert not info.valid_at()
    assert info.valid_at(info.not_before + dt.timedelta(seconds=1))


def test_serial_matches_what_a_peer_sees(pki: Pki) -> None:
    tls = DownstreamTls("SIMPLE", credential_names=("s",), secrets={"s": pki.a.secret()})
    out = handshake(server_context(tls), client_ctx(pki.ca.pem), "a.example.com")
    assert out.client is not None
    seen = (out.client.getpeercert() or {})["serialNumber"]
    assert isinstance(seen, str) and int(seen, 16) == cert_info(pki.a.cert_pem).serial
    out.close()


def test_chain_info(pki: Pki) -> None:
    infos = cert_chain_info(pki.a.cert_pem + pki.ca.pem)
    assert [i.subject for i in infos] == ["CN=a", "CN=Test CA"]
    assert cert_info(pki.a.cert_pem + pki.ca.pem).subject == "CN=a"


@pytest.mark.parametrize("pem", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_cert_info_garbage(pem: bytes) -> None:
    with pytest.raises(TLSConfigError):
        cert_info(pem)


def test_every_mapped_name_is_available_or_says_why() -> None:
    for iana, name in IANA_TO_OPENSSL.items():
        try:
            assert openssl_cipher_names((iana,)) == (name,)
        except TLSConfigError as exc:
            assert "not available in this build" in str(exc)
    assert openssl_cipher_names(MOZILLA_INTERMEDIATE_CIPHERS) == MOZILLA_INTERMEDIATE_CIPHERS


def test_cipher_name_normalisation() -> None:
    assert openssl_cipher_names(
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
            "ECDHE-RSA-AES128-GCM-SHA256",  # a duplicate of the first
            "TLS_AES_256_GCM_SHA384",  # TLS 1.3: not configurable, ignored
            " AES128-SHA ",
        )
    ) == (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "AES128-SHA",
    )
