"""parse_client_hello on real ClientHellos from Python's ssl, byte by byte, and on bad input."""

from __future__ import annotations

import contextlib
import random
import ssl
import struct

import pytest

from isthmus.proto.tls_hello import (
    MAX_CLIENT_HELLO,
    TLS1_2,
    TLS1_3,
    ClientHello,
    ClientHelloError,
    NotTLS,
    TLSParseError,
    client_hello_sni,
    parse_client_hello,
)


def real_hello(
    sni: str | None = "Example.COM",
    alpn: list[str] | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight of a Python ssl client, captured from a MemoryBIO."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maximum is not None:
        ctx.maximum_version = maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def records(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        ctype, _, length = struct.unpack(">BHH", data[pos : pos + 5])
        out.append((ctype, data[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out


def refragment(data: bytes, size: int) -> bytes:
    """The same handshake bytes re-cut into records of ``size`` bytes."""
    (ctype, body), *_ = records(data)
    return b"".join(
        struct.pack(">BHH", ctype, 0x0301, len(body[i : i + size])) + body[i : i + size]
        for i in range(0, len(body), size)
    )


def build_hello(
    *,
    sni: bytes | None = b"example.com",
    alpn: list[bytes] | None = None,
    versions: list[int] | None = None,
    ciphers: list[int] | None = None,
    extra: list[tuple[int, bytes]] | None = None,
    session_id: bytes = b"",
) -> bytes:
    """A synthetic ClientHello record, for shapes Python's ssl never sends."""
    exts: list[tuple[int, bytes]] = []
    if sni is not None:
        entry = b"\x00" + struct.pack(">H", len(sni)) + sni
        exts.append((0, struct.pack(">H", len(entry)) + entry))
    if alpn is not None:
        lst = b"".join(bytes([len(p)]) + p for p in alpn)
        exts.append((16, struct.pack(">H", len(lst)) + lst))
    if versions is not None:
        lst = b"".join(struct.pack(">H", v) for v in versions)
        exts.append((43, bytes([len(lst)]) + lst))
    exts += extra or []
    ext_bytes = b"".join(struct.pack(">HH", t, len(d)) + d for t, d in exts)
    suites = b"".join(struct.pack(">H", c) for c in (ciphers or [0x1301, 0xC02B]))
    body = (
        struct.pack(">H", 0x0303)
        + bytes(32)
        + bytes([len(session_id)])
        + session_id
        + struct.pack(">H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack(">H", len(ext_bytes))
        + ext_bytes
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    out = b""
    for i in range(0, len(hs), 16384):
        out += struct.pack(">BHH", 0x16, 0x0301, len(hs[i : i + 16384])) + hs[i : i + 16384]
    return out


# --- real hellos -----------------------------------------------------------------------------


def test_sni_alpn_and_versions_from_a_real_hello() -> None:
    data = real_hello(alpn=["h2", "http/1.1"])
    hello = parse_client_hello(data)
    assert isinstance(hello, ClientHello)
    assert hello.sni == "example.com"
    assert hello.alpn == ("h2", "http/1.1")
    assert TLS1_3 in hello.versions and TLS1_2 in hello.versions
    assert "TLSv1.3" in hello.version_names
    assert hello.size == len(data)
    assert hello.cipher_suites and hello.signature_algorithms


def test_no_sni_no_alpn() -> None:
    hello = parse_client_hello(real_hello(sni=None))
    assert hello is not None
    assert hello.sni is None
    assert hello.alpn == ()


def test_tls12_only_client_has_no_supported_versions() -> None:
    hello = parse_client_hello(real_hello(maximum=ssl.TLSVersion.TLSv1_2))
    assert hello is not None
    assert hello.versions == (TLS1_2,)


@pytest.mark.parametrize("sni", ["Example.COM", None])
def test_every_prefix_needs_more_bytes(sni: str | None) -> None:
    data = real_hello(sni=sni, alpn=["http/1.1"])
    for cut in range(len(data)):
        assert parse_client_hello(data[:cut]) is None, cut
    hello = parse_client_hello(data)
    assert hello is not None and hello.sni == (sni.lower() if sni else None)


def test_bytes_after_the_hello_are_left_alone() -> None:
    data = real_hello()
    hello = parse_client_hello(data + b"\x17\x03\x03\x00\x05early")
    assert hello is not None and hello.size == len(data)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100, 300])
def test_hello_spanning_several_records(size: int) -> None:
    data = refragment(real_hello(alpn=["h2"]), size)
    assert len(records(data)) > 1
    for cut in range(0, len(data), max(1, size // 2)):
        assert parse_client_hello(data[:cut]) is None
    hello = parse_client_hello(data)
    assert hello is not None
    assert (hello.sni, hello.alpn, hello.size) == ("example.com", ("h2",), len(data))


def test_memoryview_and_bytearray_inputs() -> None:
    data = real_hello()
    assert parse_client_hello(bytearray(data)) == parse_client_hello(memoryview(data))


# --- not TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"G",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x80\x2e\x01\x00\x02\x00\x15",  # SSLv2-compatible hello
        b"\x16\x01",  # handshake type byte, but not version 3.x
    ],
)
def test_not_tls(data: bytes) -> None:
    with pytest.raises(NotTLS):
        parse_client_hello(data)


@pytest.mark.parametrize("data", [b"", b"\x16", b"\x16\x03", b"\x16\x03\x01\x00"])
def test_too_short_to_tell(data: bytes) -> None:
    assert parse_client_hello(data) is None


# --- malformed -------------------------------------------------------------------------------


def test_synthetic_hello_parses() -> None:
    hello = parse_client_hello(
        build_hello(sni=b"API.Example.com", alpn=[b"h2"], versions=[0x0A0A, TLS1_3, TLS1_2])
    )
    assert hello is not None
    assert hello.sni == "api.example.com"
    assert hello.versions == (TLS1_3, TLS1_2)  # GREASE dropped


def test_grease_cipher_suites_are_dropped() -> None:
    hello = parse_client_hello(build_hello(ciphers=[0x2A2A, 0x1301]))
    assert hello is not None and hello.cipher_suites == (0x1301,)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not a ClientHello"),
        (b"\x16\x03\x01\x00\x00", "handshake record of 0 bytes"),
        (b"\x16\x03\x01\x48\x01" + b"\x01", "handshake record of"),
        (b"\x16\x03\x07\x00\x04\x01\x00\x00\x00", "record version"),
        (b"\x16\x03\x01\x00\x04\x01\x01\x00\x00", "ClientHello of 65536 bytes"),
    ],
)
def test_bad_headers(data: bytes, message: str) -> None:
    with pytest.raises(TLSParseError, match=message):
        parse_client_hello(data)


def test_declared_size_over_limit_is_refused_from_the_header() -> None:
    header = b"\x01" + (MAX_CLIENT_HELLO + 1).to_bytes(3, "big")
    with pytest.raises(TLSParseError, match="limit"):
        parse_client_hello(b"\x16\x03\x01\x00\x04" + header)


def test_large_hello_within_limit_parses() -> None:
    padding = (21, bytes(12000))
    data = build_hello(extra=[padding])
    assert len(records(data)) == 1
    hello = parse_client_hello(data)
    assert hello is not None and hello.sni == "example.com"


def test_tiny_records_past_the_sniff_budget_are_refused() -> None:
    data = refragment(build_hello(extra=[(21, bytes(8000))]), 1)
    with pytest.raises(TLSParseError, match="exceed"):
        parse_client_hello(data)


def test_other_record_type_inside_the_hello() -> None:
    data = refragment(real_hello(), 50)
    first, rest = data[:55], data[55:]
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    with pytest.raises(TLSParseError, match="record type 21"):
        parse_client_hello(first + alert + rest)
    with pytest.raises(TLSParseError, match="record type 21"):
        parse_client_hello(first + alert[:1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra": [(16, b"\x00\x00")]}, "empty ALPN list"),
        ({"alpn": [b""]}, "empty ALPN protocol"),
        ({"sni": b""}, "empty or over-long"),
        ({"sni": b"bad\x00name"}, "not printable"),
        ({"sni": b"caf\xc3\xa9.example"}, "not printable"),
        ({"extra": [(0, b"\x00\x00")]}, "sent twice"),
        ({"extra": [(43, b"\x03\x03\x04\x03")]}, "odd length"),
        ({"extra": [(13, b"\x00\x04\x04\x03")]}, "truncated"),
        ({"session_id": bytes(33)}, "session_id longer"),
        ({"extra": [(16, b"\x00\x03\x02h2\xff")]}, "trailing bytes in alpn"),
    ],
)
def test_malformed_bodies(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TLSParseError, match=message):
        parse_client_hello(build_hello(**kwargs))  # type: ignore[arg-type]


def test_two_host_names_are_refused() -> None:
    entries = b"".join(b"\x00" + struct.pack(">H", len(n)) + n for n in (b"a.test", b"b.test"))
    ext = struct.pack(">H", len(entries)) + entries
    with pytest.raises(TLSParseError, match="more than one host_name"):
        parse_client_hello(build_hello(sni=None, extra=[(0, ext)]))


def test_mutated_hellos_never_escape_the_error_types() -> None:
    """Random byte flips, truncations and insertions: a hello, None, or our errors only."""
    seed_hellos = [real_hello(alpn=["h2", "http/1.1"]), refragment(real_hello(), 40)]
    rng = random.Random(1234)
    for _ in range(3000):
        data = bytearray(rng.choice(seed_hellos))
        for _ in range(rng.randint(1, 4)):
            action, pos = rng.randint(0, 2), rng.randrange(len(data))
            if action == 0:
                data[pos] = rng.randrange(256)
            elif action == 1:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        with contextlib.suppress(ClientHelloError):
            parse_client_hello(bytes(data))


# --- the SNI-only scan -----------------------------------------------------------------------


def test_sni_scan_agrees_with_the_full_parse() -> None:
    """Same answers on real, fragmented, SNI-less and prefix inputs; on mutated hellos it
    answers whenever the full parse does, with the same name, and never escapes our errors."""
    seeds = [
        real_hello(alpn=["h2", "http/1.1"]),
        real_hello(sni=None),
        real_hello(maximum=ssl.TLSVersion.TLSv1_2),
        refragment(real_hello(), 40),
        build_hello(sni=b"Mixed.Case.Example"),
    ]
    for data in seeds:
        hello = parse_client_hello(data)
        assert hello is not None
        assert client_hello_sni(data) == (hello.sni,)
        for cut in (0, 1, 5, 9, len(data) // 2, len(data) - 1):
            assert client_hello_sni(data[:cut]) is None
    rng = random.Random(4321)
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        try:
            full: ClientHello | str | None = parse_client_hello(bytes(data))
        except ClientHelloError:
            full = "error"
        try:
            scan = client_hello_sni(bytes(data))
        except ClientHelloError:
            assert full == "error"
            continue
        if full is None:
            assert scan is None
        elif isinstance(full, ClientHello):
            assert scan == (full.sni,)


def test_sni_scan_refuses_what_the_full_parse_refuses() -> None:
    with pytest.raises(NotTLS):
        client_hello_sni(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(TLSParseError, match="more than one host_name"):
        entries = b"".join(b"\x00" + struct.pack(">H", len(n)) + n for n in (b"a.t", b"b.t"))
        client_hello_sni(
            build_hello(sni=None, extra=[(0, struct.pack(">H", len(entries)) + entries)])
        )
    with pytest.raises(TLSParseError, match="not printable"):
        client_hello_sni(build_hello(sni=b"bad\x00name"))
    with pytest.raises(TLSParseError, match="sent twice"):
        client_hello_sni(build_hello(extra=[(0, b"\x00\x00")]))
