"""client_context: DestinationRule tls origination against a real TLS upstream."""

from __future__ import annotations

import ssl

import pytest

from isthmus.dataplane.tls import (
    TLSConfigError,
    check_peer,
    check_server_san,
    client_context,
    server_context,
)
from isthmus.snapshot.types import DownstreamTls, UpstreamTls

from .conftest import Pki
from .handshake import Outcome, handshake


def upstream(pki: Pki, mode: str = "SIMPLE") -> tuple[ssl.SSLContext, list[str | None]]:
    """The upstream server, recording the SNI each client sent."""
    secret = pki.upstream.secret(ca=mode != "SIMPLE")
    ctx = server_context(DownstreamTls(mode, credential_names=("up",), secrets={"up": secret}))
    seen: list[str | None] = []

    def record(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    ctx.sni_callback = record
    return ctx, seen


def originate(server: ssl.SSLContext, tls: UpstreamTls, host: str | None = None) -> Outcome:
    ctx, sni = client_context(tls, host=host)
    return handshake(server, ctx, sni)


def test_simple_verifies_with_ca_certificates(pki: Pki) -> None:
    server, seen = upstream(pki)
    tls = UpstreamTls("SIMPLE", ca_certificates=str(pki.ca.path))
    out = originate(server, tls, host="upstream.test")
    assert out.ok, out.client_error
    assert out.served_serial == pki.upstream.serial
    assert out.client is not None and check_peer(out.client)
    assert seen == ["upstream.test"]
    out.close()


def test_sni_setting_wins_over_the_host(pki: Pki) -> None:
    server, seen = upstream(pki)
    tls = UpstreamTls("SIMPLE", ca_certificates=str(pki.ca.path), sni="api.internal")
    out = originate(server, tls, host="upstream.test")
    assert out.ok and seen == ["api.internal"]
    out.close()


def test_simple_fails_with_the_wrong_ca(pki: Pki) -> None:
    server, _ = upstream(pki)
    out = originate(
        server, UpstreamTls("SIMPLE", ca_certificates=str(pki.other_ca.path)), "upstream.test"
    )
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)


def test_simple_fails_on_a_host_not_in_the_certificate(pki: Pki) -> None:
    server, _ = upstream(pki)
    out = originate(server, UpstreamTls("SIMPLE", ca_certificates=str(pki.ca.path)), "wrong.test")
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)
    assert "wrong.test" in str(out.client_error)


def test_simple_uses_system_cas_without_ca_certificates(pki: Pki) -> None:
    server, _ = upstream(pki)
    out = originate(server, UpstreamTls("SIMPLE"), "upstream.test")
    assert isinstance(out.client_error, ssl.SSLCertVerificationError)  # a private CA


def test_subject_alt_names_replace_the_host_check(pki: Pki) -> None:
    server, seen = upstream(pki)
    tls = UpstreamTls(
        "SIMPLE", ca_certificates=str(pki.ca.path), subject_alt_names=("api.internal",)
    )
    ctx, sni = client_context(tls, host="service.default.svc.cluster.local")
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    out = handshake(server, ctx, sni)
    assert out.client is not None, out.client_error
    assert check_peer(out.client)
    assert check_server_san(out.client, ["nope.test", "API.internal"])
    assert check_server_san(out.client, ["127.0.0.1"])
    assert not check_server_san(out.client, ["upstream"])
    assert seen == ["service.default.svc.cluster.local"]
    out.close()


def test_subject_alt_names_not_in_the_certificate_fail(pki: Pki) -> None:
    server, _ = upstream(pki)
    tls = UpstreamTls(
        "SIMPLE", ca_certificates=str(pki.ca.path), subject_alt_names=("spiffe://td/ns/x/sa/y",)
    )
    out = originate(server, tls, host="upstream.test")
    assert out.client is not None
    assert not check_peer(out.client)
    out.close()


def test_subject_alt_names_still_need_a_trusted_chain(pki: Pki) -> None:
    server, _ = upstream(pki)
    tls = UpstreamTls(
        "SIMPLE", ca_certificates=str(pki.other_ca.path), subject_alt_names=("upstream.test",)
    )
    assert isinstance(originate(server, tls, "upstream.test").client_error, ssl.SSLError)


def test_insecure_skip_verify(pki: Pki) -> None:
    server, _ = upstream(pki)
    tls = UpstreamTls(
        "SIMPLE",
        ca_certificates=str(pki.other_ca.path),
        insecure_skip_verify=True,
        subject_alt_names=("ignored.test",),
    )
    ctx, _ = client_context(tls)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    out = originate(server, tls, host="wrong.test")
    assert out.ok and out.served_serial == pki.upstream.serial
    assert out.client is not None and check_peer(out.client)
    out.close()


def test_mutual_presents_the_client_certificate_from_files(pki: Pki) -> None:
    server, _ = upstream(pki, "MUTUAL")
    tls = UpstreamTls(
        "MUTUAL",
        ca_certificates=str(pki.ca.path),
        client_certificate=str(pki.alice.cert_path),
        private_key=str(pki.alice.key_path),
    )
    out = originate(server, tls, host="upstream.test")
    assert out.ok, out.server_error
    assert out.client_serial == pki.alice.serial
    assert out.roundtrip() == b"ping"
    out.close()


def test_mutual_from_a_credential_secret(pki: Pki) -> None:
    server, _ = upstream(pki, "MUTUAL")
    tls = UpstreamTls("MUTUAL", credential_name="alice-cred")
    ctx, sni = client_context(tls, host="upstream.test", secret=pki.bob.secret(ca=True))
    out = handshake(server, ctx, sni)
    assert out.ok, (out.client_error, out.server_error)
    assert out.client_serial == pki.bob.serial
    out.close()


def test_simple_client_against_a_mutual_upstream_is_refused(pki: Pki) -> None:
    server, _ = upstream(pki, "MUTUAL")
    out = originate(
        server, UpstreamTls("SIMPLE", ca_certificates=str(pki.ca.path)), "upstream.test"
    )
    assert not out.ok


def test_alpn(pki: Pki) -> None:
    server, _ = upstream(pki)
    server.set_alpn_protocols(["h2", "http/1.1"])
    ctx, sni = client_context(
        UpstreamTls("SIMPLE", ca_certificates=str(pki.ca.path)), host="upstream.test", alpn=["h2"]
    )
    out = handshake(server, ctx, sni)
    assert out.client is not None and out.client.selected_alpn_protocol() == "h2"
    out.close()


def test_client_defaults(pki: Pki) -> None:
    ctx, sni = client_context(UpstreamTls("SIMPLE"))
    assert sni is None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_RENEGOTIATION


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (
            UpstreamTls("ISTIO_MUTUAL"),
            "^ISTIO_MUTUAL needs Istio's mesh CA; outside a mesh use SIMPLE or MUTUAL with your "
            "own certificates$",
        ),
        (UpstreamTls("MUTUAL"), "needs a client certificate"),
        (UpstreamTls("DISABLE"), "only SIMPLE and MUTUAL"),
        (UpstreamTls("SIMPLE", credential_name="c"), "content was not provided"),
        (UpstreamTls("SIMPLE", ca_certificates="/nonexistent/ca.pem"), "caCertificates"),
        (
            UpstreamTls("MUTUAL", client_certificate="/nonexistent.crt", private_key="/x.key"),
            "clientCertificate",
        ),
    ],
)
def test_client_configuration_errors(tls: UpstreamTls, message: str) -> None:
    with pytest.raises(TLSConfigError, match=message):
        client_context(tls)


def test_mutual_from_the_secret_the_translator_attached(pki: Pki) -> None:
    server, _ = upstream(pki, "MUTUAL")
    tls = UpstreamTls(
        "MUTUAL", credential_name="c", secret=tuple(pki.alice.secret(ca=True).items())
    )
    out = originate(server, tls, host="upstream.test")
    assert out.ok, (out.client_error, out.server_error)
    assert out.client_serial == pki.alice.serial
    out.close()
