"""server_context: Gateway server tls modes, versions, ciphers and client certificates."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

import pytest

from isthmus.dataplane import tls_material, tls_openssl
from isthmus.dataplane.tls import (
    MOZILLA_INTERMEDIATE_CIPHERS,
    TLSConfigError,
    TLSContext,
    check_client_san,
    check_peer,
    server_context,
)
from isthmus.snapshot.types import DownstreamTls

from .conftest import Pki
from .handshake import client_ctx, handshake

TLS1_1, TLS1_2, TLS1_3 = ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def simple(pki: Pki, **kwargs: object) -> DownstreamTls:
    return DownstreamTls(
        "SIMPLE",
        credential_names=("site",),
        secrets={"site": pki.server_ec.secret()},
        **kwargs,  # type: ignore[arg-type]
    )


def mutual(pki: Pki, mode: str = "MUTUAL", **kwargs: object) -> DownstreamTls:
    return DownstreamTls(
        mode,
        credential_names=("site",),
        secrets={"site": pki.server_ec.secret(ca=True)},
        **kwargs,  # type: ignore[arg-type]
    )


def as_client(pki: Pki, leaf: object = None, **kwargs: object) -> ssl.SSLContext:
    cert = None if leaf is None else (str(leaf.cert_path), str(leaf.key_path))  # type: ignore[attr-defined]
    return client_ctx(pki.ca.pem, cert=cert, **kwargs)  # type: ignore[arg-type]


# --- SIMPLE ----------------------------------------------------------------------------------


def test_simple_from_a_secret(pki: Pki) -> None:
    ctx = server_context(simple(pki))
    assert isinstance(ctx, TLSContext)
    out = handshake(ctx, as_client(pki, alpn=["h2", "http/1.1"]), "example.com")
    assert out.ok, (out.client_error, out.server_error)
    assert out.served_serial == pki.server_ec.serial
    assert out.client is not None and out.client.version() == "TLSv1.3"
    assert out.client.selected_alpn_protocol() == "http/1.1"
    assert out.roundtrip() == b"ping"
    out.close()


def test_simple_from_files(pki: Pki) -> None:
    tls = DownstreamTls(
        "SIMPLE",
        server_certificate=str(pki.server_rsa.cert_path),
        private_key=str(pki.server_rsa.key_path),
    )
    out = handshake(server_context(tls, alpn=()), as_client(pki), "www.example.com")
    assert out.ok and out.served_serial == pki.server_rsa.serial
    assert out.client is not None and out.client.selected_alpn_protocol() is None
    out.close()


def test_rsa_and_ecdsa_pair_chosen_by_what_the_client_offers(pki: Pki) -> None:
    tls = DownstreamTls(
        "SIMPLE",
        credential_names=("rsa", "ec"),
        secrets={"rsa": pki.server_rsa.secret(), "ec": pki.server_ec.secret()},
    )
    ctx = server_context(tls)
    cases = [
        (as_client(pki, maximum=TLS1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256"), pki.server_rsa),
        (as_client(pki, maximum=TLS1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"), pki.server_ec),
        # TLS 1.3: by the client's signature_algorithms, where OpenSSL lists ECDSA first
        (as_client(pki), pki.server_ec),
    ]
    for client, expected in cases:
        out = handshake(ctx, client, "example.com")
        assert out.ok, out.client_error
        assert out.served_serial == expected.serial, expected.name
        out.close()


def test_two_credentials_of_one_key_type_are_refused(pki: Pki) -> None:
    tls = DownstreamTls(
        "SIMPLE",
        credential_names=("one", "two"),
        secrets={"one": pki.a.secret(), "two": pki.b.secret()},
    )
    with pytest.raises(TLSConfigError, match="both ECDSA"):
        server_context(tls)


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (DownstreamTls("SIMPLE", credential_names=("missing",)), "Secret not found"),
        (DownstreamTls("SIMPLE", credential_names=("s",), secrets={"s": {}}), "no tls.crt"),
        (DownstreamTls("SIMPLE"), "no server certificate"),
        (DownstreamTls("PASSTHROUGH"), "nothing to terminate"),
        (DownstreamTls("STRICT"), "expected one of"),
        (DownstreamTls("SIMPLE", credential_names=("a", "b", "c")), "at most two"),
        (
            DownstreamTls("SIMPLE", server_certificate="/nonexistent.crt", private_key="/x.key"),
            "do not load",
        ),
    ],
)
def test_configuration_errors(tls: DownstreamTls, message: str) -> None:
    with pytest.raises(TLSConfigError, match=message):
        server_context(tls)


def test_key_that_does_not_match_the_certificate(pki: Pki) -> None:
    secret = {"cert": pki.a.cert_pem, "key": pki.b.key_pem}
    with pytest.raises(TLSConfigError, match="credentialName 'x'"):
        server_context(DownstreamTls("SIMPLE", credential_names=("x",), secrets={"x": secret}))


def test_kubernetes_key_names_are_accepted(pki: Pki) -> None:
    secret = {"tls.crt": pki.server_ec.cert_pem, "tls.key": pki.server_ec.key_pem}
    ctx = server_context(DownstreamTls("SIMPLE", credential_names=("k",), secrets={"k": secret}))
    out = handshake(ctx, as_client(pki), "example.com")
    assert out.ok and out.served_serial == pki.server_ec.serial
    out.close()


# --- Mozilla intermediate defaults -----------------------------------------------------------


def test_defaults_are_mozilla_intermediate(pki: Pki) -> None:
    ctx = server_context(simple(pki))
    assert ctx.minimum_version == TLS1_2
    assert ctx.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert tls12 == set(MOZILLA_INTERMEDIATE_CIPHERS)
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.options & ssl.OP_NO_TICKET
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert ctx.verify_mode == ssl.CERT_NONE


def test_tls11_is_refused_by_default(pki: Pki) -> None:
    old = as_client(pki, minimum=TLS1_1, maximum=TLS1_1, ciphers="ALL:@SECLEVEL=0")
    out = handshake(server_context(simple(pki)), old, "example.com")
    assert not out.ok
    assert out.server_error is not None


def test_cbc_only_client_is_refused_by_default(pki: Pki) -> None:
    client = as_client(pki, maximum=TLS1_2, ciphers="ECDHE-ECDSA-AES128-SHA")
    assert not handshake(server_context(simple(pki)), client, "example.com").ok


def test_client_cipher_preference_wins(pki: Pki) -> None:
    ctx = server_context(simple(pki))
    for first in ("ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384"):
        client = as_client(pki, maximum=TLS1_2, ciphers=f"{first}:ECDHE-ECDSA-AES128-GCM-SHA256")
        client.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        out = handshake(ctx, client, "example.com")
        assert out.cipher == first
        out.close()


def test_dhe_uses_ffdhe2048(pki: Pki) -> None:
    tls = DownstreamTls("SIMPLE", credential_names=("r",), secrets={"r": pki.server_rsa.secret()})
    client = as_client(pki, maximum=TLS1_2, ciphers="DHE-RSA-AES128-GCM-SHA256")
    out = handshake(server_context(tls), client, "example.com")
    assert out.cipher == "DHE-RSA-AES128-GCM-SHA256"
    out.close()


@pytest.mark.skipif(not tls_openssl.available(), reason="needs OpenSSL through ctypes")
def test_key_exchange_groups_are_x25519_p256_p384(pki: Pki) -> None:
    # An RSA certificate: with ECDSA, TLS 1.2 also needs the certificate's curve offered.
    tls = DownstreamTls("SIMPLE", credential_names=("r",), secrets={"r": pki.server_rsa.secret()})
    ctx = server_context(tls)
    for curve, ok in [("prime256v1", True), ("secp384r1", True), ("secp521r1", False)]:
        for maximum in (TLS1_2, TLS1_3):
            client = as_client(pki, maximum=maximum, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
            client.set_ecdh_curve(curve)  # the client then offers this group only
            out = handshake(ctx, client, "example.com")
            assert out.ok is ok, (curve, maximum, out.client_error)
            out.close()


# --- versions and cipherSuites ---------------------------------------------------------------


@pytest.mark.skipif(not ssl.HAS_TLSv1_1, reason="OpenSSL without TLS 1.1")
def test_min_tls11_is_honoured(pki: Pki) -> None:
    ctx = server_context(simple(pki, min_protocol_version="TLSV1_1"))
    old = as_client(pki, minimum=TLS1_1, maximum=TLS1_1, ciphers="ALL:@SECLEVEL=0")
    out = handshake(ctx, old, "example.com")
    assert out.client is not None, (out.client_error, out.server_error)
    assert out.client.version() == "TLSv1.1"
    out.close()


def test_min_tls13_refuses_tls12(pki: Pki) -> None:
    ctx = server_context(simple(pki, min_protocol_version="TLSV1_3"))
    assert not handshake(ctx, as_client(pki, maximum=TLS1_2), "example.com").ok
    out = handshake(ctx, as_client(pki), "example.com")
    assert out.client is not None and out.client.version() == "TLSv1.3"
    out.close()


def test_max_tls12_caps_the_version(pki: Pki) -> None:
    ctx = server_context(simple(pki, max_protocol_version="TLSV1_2"))
    out = handshake(ctx, as_client(pki), "example.com")
    assert out.client is not None and out.client.version() == "TLSv1.2"
    out.close()
    assert not handshake(ctx, as_client(pki, minimum=TLS1_3), "example.com").ok


@pytest.mark.parametrize(
    ("lo", "hi", "message"),
    [
        ("TLSV1_3", "TLSV1_2", "below minProtocolVersion"),
        ("TLSV1_9", "TLS_AUTO", "minProtocolVersion 'TLSV1_9'"),
        ("TLSV1_2", "SSLV3", "maxProtocolVersion 'SSLV3'"),
    ],
)
def test_bad_versions(pki: Pki, lo: str, hi: str, message: str) -> None:
    with pytest.raises(TLSConfigError, match=message):
        server_context(simple(pki, min_protocol_version=lo, max_protocol_version=hi))


@pytest.mark.parametrize(
    "suites",
    [
        ("ECDHE-ECDSA-AES256-GCM-SHA384",),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",),
        ("[ECDHE-ECDSA-AES256-GCM-SHA384|ECDHE-RSA-AES256-GCM-SHA384]", "TLS_AES_128_GCM_SHA256"),
    ],
)
def test_cipher_suites_restrict(pki: Pki, suites: tuple[str, ...]) -> None:
    ctx = server_context(simple(pki, cipher_suites=suites, max_protocol_version="TLSV1_2"))
    refused = as_client(pki, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not handshake(ctx, refused, "example.com").ok
    both = as_client(pki, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    out = handshake(ctx, both, "example.com")
    assert out.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
    out.close()


@pytest.mark.parametrize("name", ["ECDHE-ECDSA-AES128-GCM-SHA999", "HIGH", "ALL:!aNULL", ""])
def test_unknown_cipher_suites_are_refused(pki: Pki, name: str) -> None:
    with pytest.raises(TLSConfigError, match="unknown cipher suite"):
        server_context(simple(pki, cipher_suites=(name,)))


# --- client certificates ---------------------------------------------------------------------


def test_mutual_accepts_a_client_of_the_ca(pki: Pki) -> None:
    out = handshake(server_context(mutual(pki)), as_client(pki, pki.alice), "example.com")
    assert out.ok, out.server_error
    assert out.client_serial == pki.alice.serial
    assert out.server is not None and check_peer(out.server)
    assert out.roundtrip() == b"ping"
    out.close()


@pytest.mark.parametrize("version", [TLS1_2, TLS1_3])
@pytest.mark.parametrize("who", [None, "other_client", "mallory", "expired"])
def test_mutual_rejects(pki: Pki, who: str | None, version: ssl.TLSVersion) -> None:
    leaf = None if who is None else getattr(pki, who)
    out = handshake(
        server_context(mutual(pki)), as_client(pki, leaf, maximum=version), "example.com"
    )
    assert not out.ok
    assert out.server_error is not None


def test_optional_mutual(pki: Pki) -> None:
    ctx = server_context(mutual(pki, "OPTIONAL_MUTUAL"))
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    out = handshake(ctx, as_client(pki), "example.com")
    assert out.ok and out.client_serial is None
    out.close()
    out = handshake(ctx, as_client(pki, pki.bob), "example.com")
    assert out.ok and out.client_serial == pki.bob.serial
    out.close()
    assert not handshake(ctx, as_client(pki, pki.other_client), "example.com").ok


def test_ca_from_files_and_from_a_cacert_secret(pki: Pki) -> None:
    by_file = DownstreamTls(
        "MUTUAL",
        server_certificate=str(pki.server_ec.cert_path),
        private_key=str(pki.server_ec.key_path),
        ca_certificates=str(pki.ca.path),
    )
    by_secret = DownstreamTls(
        "MUTUAL",
        credential_names=("site",),
        secrets={"site": pki.server_ec.secret(), "site-cacert": {"cacert": pki.ca.pem}},
    )
    for tls in (by_file, by_secret):
        ctx = server_context(tls)
        out = handshake(ctx, as_client(pki, pki.alice), "example.com")
        assert out.ok, out.server_error
        out.close()
        assert not handshake(ctx, as_client(pki, pki.other_client), "example.com").ok


def test_mutual_without_a_ca(pki: Pki) -> None:
    tls = DownstreamTls("MUTUAL", credential_names=("s",), secrets={"s": pki.server_ec.secret()})
    with pytest.raises(TLSConfigError, match="needs a CA for client certificates"):
        server_context(tls)


@pytest.mark.parametrize("source", ["secret", "file"])
def test_crl_rejects_the_revoked_client(pki: Pki, source: str) -> None:
    if source == "secret":
        tls = DownstreamTls(
            "MUTUAL",
            credential_names=("site",),
            secrets={"site": pki.server_ec.secret(ca=True, crl=pki.crl)},
        )
    else:
        tls = mutual(pki, ca_crl=str(pki.ca.crl_path))
    ctx = server_context(tls)
    assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert not handshake(ctx, as_client(pki, pki.revoked), "example.com").ok
    out = handshake(ctx, as_client(pki, pki.alice), "example.com")
    assert out.ok, out.server_error
    out.close()


def test_a_crl_blob_holding_a_certificate_is_refused(pki: Pki) -> None:
    tls = DownstreamTls(
        "MUTUAL",
        credential_names=("site",),
        secrets={"site": pki.server_ec.secret(ca=True, crl=pki.crl + pki.other_ca.pem)},
    )
    with pytest.raises(TLSConfigError, match="unexpected PEM block"):
        server_context(tls)


def test_subject_alt_names_allow_list(pki: Pki) -> None:
    ctx = server_context(mutual(pki, subject_alt_names=("spiffe://td/ns/default/sa/alice",)))
    assert ctx.peer_sans == ("spiffe://td/ns/default/sa/alice",)
    alice = handshake(ctx, as_client(pki, pki.alice), "example.com")
    bob = handshake(ctx, as_client(pki, pki.bob), "example.com")
    assert alice.server is not None and bob.server is not None
    assert check_peer(alice.server)
    assert not check_peer(bob.server)
    assert check_client_san(bob.server, ["bob.test"])
    assert check_client_san(bob.server, ["BOB.test."])
    assert not check_client_san(bob.server, ["alice.test", "spiffe://td/ns/default/sa/alice"])
    assert check_client_san(bob.server, [])
    alice.close()
    bob.close()


def test_optional_mutual_san_check_lets_certless_clients_through(pki: Pki) -> None:
    ctx = server_context(mutual(pki, "OPTIONAL_MUTUAL", subject_alt_names=("alice.test",)))
    out = handshake(ctx, as_client(pki), "example.com")
    assert out.server is not None and check_peer(out.server)
    assert not check_client_san(out.server, ["alice.test"])
    out.close()
    out = handshake(ctx, as_client(pki, pki.bob), "example.com")
    assert out.server is not None and not check_peer(out.server)
    out.close()


def test_istio_mutual_needs_a_mesh_ca(pki: Pki) -> None:
    tls = mutual(pki, "ISTIO_MUTUAL")
    with pytest.raises(TLSConfigError, match="ISTIO_MUTUAL needs Istio's mesh CA"):
        server_context(tls)
    for istio_ca in (str(pki.other_ca.path), pki.other_ca.pem.decode()):
        ctx = server_context(tls, istio_ca=istio_ca)
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        out = handshake(ctx, as_client(pki, pki.other_client), "example.com")
        assert out.ok, out.server_error
        out.close()
        assert not handshake(ctx, as_client(pki, pki.alice), "example.com").ok
        assert not handshake(ctx, as_client(pki), "example.com").ok


# --- key material ----------------------------------------------------------------------------


def _leftovers() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("isthmus-tls-")}


@pytest.mark.parametrize("memfd", [True, False])
def test_pem_bytes_leave_no_files(
    pki: Pki, memfd: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if memfd and not tls_material.use_memfd:
        pytest.skip("no memfd_create here")
    monkeypatch.setattr(tls_material, "use_memfd", memfd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[str] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str | None = None, **kw: object) -> None:
        seen.append(os.readlink(certfile) if memfd else certfile)
        if not memfd:
            assert os.stat(os.path.dirname(certfile)).st_mode & 0o777 == 0o700
            assert keyfile is not None and os.stat(keyfile).st_mode & 0o777 == 0o600
        real_load(self, certfile, keyfile)

    client = as_client(pki, pki.alice)
    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    ctx = server_context(mutual(pki))
    monkeypatch.undo()
    assert seen
    if memfd:
        assert all(s.startswith("/memfd:isthmus-tls") for s in seen)
    assert os.listdir(tmp_path) == []
    out = handshake(ctx, client, "example.com")
    assert out.ok
    out.close()


def test_memfd_refused_falls_back_to_private_files(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not tls_material.use_memfd:
        pytest.skip("no memfd_create here")

    def refuse(name: str, flags: int = 0) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tls_material, "use_memfd", True)  # restored after the test
    monkeypatch.setattr(os, "memfd_create", refuse)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ctx = server_context(simple(pki))
    assert tls_material.use_memfd is False
    assert os.listdir(tmp_path) == []
    out = handshake(ctx, as_client(pki), "example.com")
    assert out.ok
    out.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_sessions_resume_with_a_cache_that_is_not_rescanned(
    pki: Pki, version: ssl.TLSVersion
) -> None:
    """The session cache evicts by size only (no full scan every 255 handshakes) and still
    resumes: TLS 1.2 by session ID, TLS 1.3 by its stateful tickets."""
    ctx = server_context(simple(pki))
    assert tls_openssl.keep_session_cache_unscanned(ctx)
    client = as_client(pki, maximum=version)
    first = handshake(ctx, client, "example.com")
    assert first.ok
    first.roundtrip()
    session = first.client.session if first.client is not None else None
    first.shutdown()
    assert session is not None
    again = handshake(ctx, client, "example.com", session=session)
    assert again.ok and again.client is not None and again.client.session_reused
    again.close()
