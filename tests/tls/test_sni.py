"""SniRouter: several Gateway servers on one port, each with its own certificate."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest

from isthmus.dataplane import tls_openssl
from isthmus.dataplane.tls import SniRouter, TLSConfigError, check_peer, server_context
from isthmus.proto.tls_hello import parse_client_hello
from isthmus.snapshot.types import DownstreamTls

from ..tls_certs import Leaf
from .conftest import Pki
from .handshake import client_ctx, handshake

needs_ctypes = pytest.mark.skipif(not tls_openssl.available(), reason="needs tls_openssl")


def site(leaf: Leaf, mode: str = "SIMPLE", **kwargs: object) -> ssl.SSLContext:
    secret = leaf.secret(ca=mode != "SIMPLE")
    tls = DownstreamTls(mode, credential_names=(leaf.name,), secrets={leaf.name: secret}, **kwargs)  # type: ignore[arg-type]
    return server_context(tls)


@pytest.fixture(scope="module")
def router(pki: Pki) -> SniRouter:
    return SniRouter(
        [
            (("a.example.com",), site(pki.a)),
            (("B.Example.com",), site(pki.b)),
            (("*.wild.example.com",), site(pki.wild)),
            (("*",), site(pki.fallback)),
        ]
    )


def test_lookup_order(pki: Pki) -> None:
    a, b, wild, deep, fallback = (object() for _ in range(5))
    table = SniRouter(
        [
            (("a.example.com",), a),  # type: ignore[list-item]
            (("b.example.com", "*.example.com"), b),  # type: ignore[list-item]
            (("*.deep.example.com",), deep),  # type: ignore[list-item]
            (("a.example.com", "*.wild.example.com"), wild),  # type: ignore[list-item]
        ],
        default=fallback,  # type: ignore[arg-type]
    )
    expect = {
        "a.example.com": a,  # exact; the first server to claim a name keeps it
        "A.EXAMPLE.COM.": a,
        "b.example.com": b,
        "c.example.com": b,  # *.example.com
        "x.y.example.com": b,  # a wildcard covers deeper names, as Envoy's server_names do
        "x.deep.example.com": deep,  # the longest suffix wins
        "x.wild.example.com": wild,
        "example.com": fallback,  # *.example.com needs a label in front
        "other.test": fallback,
        None: fallback,
        "": fallback,
    }
    for sni, ctx in expect.items():
        assert table.source_for(sni) is ctx, sni


def test_no_default_means_no_context() -> None:
    table = SniRouter([(("a.test",), object())])  # type: ignore[list-item]
    assert table.source_for("b.test") is None
    assert table.source_for(None) is None


def test_empty_server_names_is_a_catch_all(pki: Pki) -> None:
    ctx = site(pki.fallback)
    assert SniRouter([((), ctx)]).context_for("anything.test") is ctx


@needs_ctypes
@pytest.mark.parametrize(
    ("sni", "leaf"),
    [
        ("a.example.com", "a"),
        ("b.example.com", "b"),
        ("x.wild.example.com", "wild"),
        ("unknown.test", "fallback"),
        (None, "fallback"),
    ],
)
def test_front_serves_the_certificate_for_the_sni(
    pki: Pki, router: SniRouter, sni: str | None, leaf: str
) -> None:
    out = handshake(router.front, client_ctx(), sni)
    assert out.ok, out.client_error
    assert out.served_serial == getattr(pki, leaf).serial
    out.close()


@needs_ctypes
def test_front_without_a_default_refuses_unknown_names(pki: Pki) -> None:
    router = SniRouter([(("a.example.com",), site(pki.a))])
    out = handshake(router.front, client_ctx(), "b.example.com")
    assert not out.ok
    assert "UNRECOGNIZED_NAME" in str(out.client_error)
    assert handshake(router.front, client_ctx(), "a.example.com").ok


@needs_ctypes
def test_front_takes_alpn_from_the_chosen_context(pki: Pki) -> None:
    h2 = server_context(
        DownstreamTls("SIMPLE", credential_names=("a",), secrets={"a": pki.a.secret()}),
        alpn=("h2", "http/1.1"),
    )
    router = SniRouter([(("a.example.com",), h2), (("b.example.com",), site(pki.b))])
    for sni, expected in [("a.example.com", "h2"), ("b.example.com", "http/1.1")]:
        out = handshake(router.front, client_ctx(alpn=["h2", "http/1.1"]), sni)
        assert out.client is not None and out.client.selected_alpn_protocol() == expected
        out.close()


def test_front_refuses_servers_that_differ_in_handshake_settings(pki: Pki) -> None:
    router = SniRouter(
        [(("a.example.com",), site(pki.a)), (("b.example.com",), site(pki.b, "MUTUAL"))]
    )
    with pytest.raises(TLSConfigError, match="context_for"):
        _ = router.front
    router = SniRouter(
        [
            (("a.example.com",), site(pki.a)),
            (("b.example.com",), site(pki.b, min_protocol_version="TLSV1_3")),
        ]
    )
    with pytest.raises(TLSConfigError, match="context_for"):
        _ = router.front


def sniffing_server(router: SniRouter) -> object:
    """What a listener does: peek at the ClientHello, pick the context, then wrap."""

    def wrap(sock: socket.socket) -> ssl.SSLSocket:
        deadline = time.monotonic() + 5
        while True:
            hello = parse_client_hello(sock.recv(65536, socket.MSG_PEEK))
            if hello is not None:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ctx = router.context_for(hello.sni)
        assert ctx is not None
        return ctx.wrap_socket(sock, server_side=True)

    return wrap


def test_sniffed_sni_with_context_for_allows_different_modes(pki: Pki) -> None:
    router = SniRouter(
        [
            (("a.example.com",), site(pki.a)),
            (("b.example.com",), site(pki.b, "MUTUAL", min_protocol_version="TLSV1_3")),
        ]
    )
    serve = sniffing_server(router)
    out = handshake(serve, client_ctx(pki.ca.pem, maximum=ssl.TLSVersion.TLSv1_2), "a.example.com")  # type: ignore[arg-type]
    assert out.ok and out.served_serial == pki.a.serial
    out.close()
    cert = (str(pki.alice.cert_path), str(pki.alice.key_path))
    out = handshake(serve, client_ctx(pki.ca.pem, cert=cert), "b.example.com")  # type: ignore[arg-type]
    assert out.ok and out.client_serial == pki.alice.serial
    out.close()
    assert not handshake(serve, client_ctx(pki.ca.pem), "b.example.com").ok  # type: ignore[arg-type]


@needs_ctypes
def test_front_switches_the_client_ca_per_server(pki: Pki) -> None:
    """a.example.com trusts Test CA, b.example.com trusts Other CA, on one front context."""
    a = server_context(
        DownstreamTls("MUTUAL", credential_names=("a",), secrets={"a": pki.a.secret(ca=True)})
    )
    b_secret = {**pki.b.secret(), "ca": pki.other_ca.pem}
    b = server_context(DownstreamTls("MUTUAL", credential_names=("b",), secrets={"b": b_secret}))
    router = SniRouter([(("a.example.com",), a), (("b.example.com",), b)])
    alice = (str(pki.alice.cert_path), str(pki.alice.key_path))
    other = (str(pki.other_client.cert_path), str(pki.other_client.key_path))
    trust = pki.ca.pem + pki.other_ca.pem
    assert handshake(router.front, client_ctx(trust, cert=alice), "a.example.com").ok
    assert handshake(router.front, client_ctx(trust, cert=other), "b.example.com").ok
    assert not handshake(router.front, client_ctx(trust, cert=other), "a.example.com").ok
    assert not handshake(router.front, client_ctx(trust, cert=alice), "b.example.com").ok


@needs_ctypes
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_front_never_resumes_a_session_across_names(pki: Pki, version: ssl.TLSVersion) -> None:
    """OpenSSL resumes before the SNI callback: a session from a.example.com must not let a
    client into b.example.com without b's client-certificate check."""
    a = server_context(
        DownstreamTls("MUTUAL", credential_names=("a",), secrets={"a": pki.a.secret(ca=True)})
    )
    b_secret = {**pki.b.secret(), "ca": pki.other_ca.pem}
    b = server_context(DownstreamTls("MUTUAL", credential_names=("b",), secrets={"b": b_secret}))
    router = SniRouter([(("a.example.com",), a), (("b.example.com",), b)])
    alice = (str(pki.alice.cert_path), str(pki.alice.key_path))
    client = client_ctx(pki.ca.pem + pki.other_ca.pem, cert=alice, maximum=version)
    first = handshake(router.front, client, "a.example.com")
    assert first.ok
    first.roundtrip()
    session = first.client.session if first.client is not None else None
    first.shutdown()
    assert session is not None
    again = handshake(router.front, client, "b.example.com", session=session)
    assert not again.ok  # a full handshake, where Other CA refuses alice
    same = handshake(router.front, client, "a.example.com", session=session)
    assert same.ok and same.client is not None and not same.client.session_reused
    same.close()


@needs_ctypes
def test_front_follows_rotating_sources(pki: Pki) -> None:
    current = {"ctx": site(pki.a)}
    router = SniRouter([(("*",), lambda: current["ctx"])])
    first = handshake(router.front, client_ctx(), "a.example.com")
    assert first.served_serial == pki.a.serial
    current["ctx"] = site(pki.b)
    second = handshake(router.front, client_ctx(), "a.example.com")
    assert second.served_serial == pki.b.serial
    assert first.roundtrip(b"still here") == b"still here"
    first.close()
    second.close()
    current["ctx"] = site(pki.b, "MUTUAL")  # now differs from what the front negotiates
    assert not handshake(router.front, client_ctx(), "a.example.com").ok


@needs_ctypes
def test_front_under_asyncio_with_check_peer(pki: Pki) -> None:
    """The front context with asyncio's SSL transport (an SSLObject), SAN check after."""
    a = server_context(
        DownstreamTls(
            "MUTUAL",
            credential_names=("a",),
            secrets={"a": pki.a.secret(ca=True)},
            subject_alt_names=("spiffe://td/ns/default/sa/alice",),
        )
    )
    router = SniRouter([(("a.example.com",), a)])
    verdicts: list[bool] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        verdicts.append(check_peer(ssl_object))
        writer.write(b"hello " + await reader.readline())
        await writer.drain()
        writer.close()

    async def main() -> list[bytes]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=router.front)
        port = server.sockets[0].getsockname()[1]
        answers = []
        for who in (pki.alice, pki.bob):
            client = client_ctx(pki.ca.pem, cert=(str(who.cert_path), str(who.key_path)))
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname="a.example.com"
            )
            writer.write(who.name.encode() + b"\n")
            answers.append(await reader.readline())
            writer.close()
        server.close()
        await server.wait_closed()
        return answers

    answers = asyncio.run(asyncio.wait_for(main(), 20))
    assert answers == [b"hello alice\n", b"hello bob\n"]
    assert verdicts == [True, False]
