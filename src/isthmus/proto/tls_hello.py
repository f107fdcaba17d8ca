"""Sniffing a TLS ClientHello: what Envoy's ``tls_inspector`` reads, as a pure function.

``parse_client_hello(data)`` is handed everything the client has sent so far and has three
outcomes (as in mitmproxy's ``parse_client_hello``): a :class:`ClientHello`, ``None`` when more
bytes are needed, or an exception — :class:`NotTLS` when the stream is not TLS at all (a
listener may then treat it as plaintext, as Envoy does) and :class:`TLSParseError` when it is
TLS but malformed or too large. No I/O, no state: call it again with the longer buffer.

The ClientHello may span several handshake records (clients with large post-quantum key
shares, or evasive ones that fragment on purpose); the handshake message is reassembled from
them. It is bounded: a hello longer than :data:`MAX_CLIENT_HELLO` bytes is refused, so a peer
can never make the caller buffer more than about ``MAX_SNIFF_BYTES``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Largest ClientHello body accepted (Envoy's tls_inspector allows 16 KiB; real hellos with an
#: X25519MLKEM768 key share are about 1.8 KiB).
MAX_CLIENT_HELLO = 16 * 1024
#: Most bytes ever buffered to decide: the hello plus a 5-byte record header per 256 bytes of
#: it. Hellos cut into records that small are fine; a large hello cut finer is refused.
MAX_SNIFF_BYTES = MAX_CLIENT_HELLO + 4 + 5 * (MAX_CLIENT_HELLO // 256 + 1)

_RECORD_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_RECORD_HEADER = 5
_MAX_RECORD = 1 << 14

EXT_SERVER_NAME = 0
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43

TLS1_0, TLS1_1, TLS1_2, TLS1_3 = 0x0301, 0x0302, 0x0303, 0x0304
VERSION_NAMES = {0x0300: "SSLv3", TLS1_0: "TLSv1", TLS1_1: "TLSv1.1", TLS1_2: "TLSv1.2",
                 TLS1_3: "TLSv1.3"}  # fmt: skip


class ClientHelloError(ValueError):
    """Base of the two ways sniffing can fail."""


class NotTLS(ClientHelloError):
    """The first bytes are not a TLS handshake record (plain HTTP, SSLv2, anything else)."""


class TLSParseError(ClientHelloError):
    """A TLS handshake that is malformed, not a ClientHello, or larger than allowed."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The parts of a ClientHello that route a connection.

    ``versions`` are the offered protocol versions (``supported_versions`` if present, else
    the legacy version), GREASE values removed; ``size`` is how many bytes of the input the
    hello's records took, so the caller knows where anything after it starts.
    """

    sni: str | None
    alpn: tuple[str, ...]
    versions: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    legacy_version: int
    size: int

    @property
    def version_names(self) -> tuple[str, ...]:
        return tuple(VERSION_NAMES.get(v, f"0x{v:04x}") for v in self.versions)


def _is_grease(value: int) -> bool:
    """RFC 8701 values (0x0A0A, 0x1A1A, …) that clients send to keep servers tolerant."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def parse_client_hello(data: bytes | bytearray | memoryview) -> ClientHello | None:
    """The ClientHello at the start of ``data``, ``None`` if incomplete, or raise."""
    view = memoryview(data)
    handshake = bytearray()
    need: int | None = None  # handshake message length incl. its 4-byte header, once known
    pos = 0
    while need is None or len(handshake) < need:
        if len(view) - pos < _RECORD_HEADER:
            _check_prefix(view[pos:], first=pos == 0)
            return None
        ctype, major, minor = view[pos], view[pos + 1], view[pos + 2]
        length = int.from_bytes(view[pos + 3 : pos + 5], "big")
        if ctype != _RECORD_HANDSHAKE or major != 3:
            if pos == 0:
                raise NotTLS(f"not a TLS handshake record (first bytes {bytes(view[:5])!r})")
            raise TLSParseError(f"record type {ctype} inside a ClientHello")
        if minor > 4:
            raise TLSParseError(f"record version 3.{minor}")
        if length == 0 or length > _MAX_RECORD:
            raise TLSParseError(f"handshake record of {length} bytes")
        if pos + _RECORD_HEADER + length > MAX_SNIFF_BYTES:
            raise TLSParseError(f"ClientHello records exceed {MAX_SNIFF_BYTES} bytes")
        fragment = view[pos + _RECORD_HEADER : pos + _RECORD_HEADER + length]
        handshake += fragment
        if len(fragment) < length:
            if need is None and len(handshake) >= 4:
                need = _handshake_length(handshake)
            return None
        pos += _RECORD_HEADER + length
        if need is None and len(handshake) >= 4:
            need = _handshake_length(handshake)
    return _parse_body(memoryview(handshake)[4:need], pos)


def _check_prefix(head: memoryview, *, first: bool) -> None:
    """Reject non-TLS as early as the bytes allow (one byte tells ``GET`` from TLS)."""
    if len(head) >= 1 and head[0] != _RECORD_HANDSHAKE:
        if first:
            raise NotTLS(f"not a TLS handshake record (first bytes {bytes(head)!r})")
        raise TLSParseError(f"record type {head[0]} inside a ClientHello")
    if len(head) >= 2 and head[1] != 3:
        if first:
            raise NotTLS(f"not a TLS record version (first bytes {bytes(head)!r})")
        raise TLSParseError(f"record version {head[1]}.x inside a ClientHello")


def _handshake_length(handshake: bytearray) -> int:
    if handshake[0] != _HANDSHAKE_CLIENT_HELLO:
        raise TLSParseError(f"handshake message type {handshake[0]}, not a ClientHello")
    length = int.from_bytes(handshake[1:4], "big")
    if length > MAX_CLIENT_HELLO:
        raise TLSParseError(f"ClientHello of {length} bytes (limit {MAX_CLIENT_HELLO})")
    return 4 + length


class _Reader:
    """Bounds-checked reads over one length-delimited structure."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, n: int, what: str) -> memoryview:
        if n > self.left:
            raise TLSParseError(f"ClientHello truncated in {what}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        return bytes(self.take(self.left, ""))

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def vector(self, length_bytes: int, what: str) -> _Reader:
        return _Reader(self.take(self.uint(length_bytes, what), what))

    def uint16s(self, what: str) -> tuple[int, ...]:
        raw = bytes(self.buf[self.pos :])
        if len(raw) % 2:
            raise TLSParseError(f"odd length in {what}")
        self.pos = len(self.buf)
        return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2))

    def done(self, what: str) -> None:
        if self.left:
            raise TLSParseError(f"{self.left} trailing bytes in {what}")


def _parse_body(body: memoryview, size: int) -> ClientHello:
    r = _Reader(body)
    legacy_version = r.uint(2, "legacy_version")
    r.take(32, "random")
    if r.vector(1, "session_id").left > 32:
        raise TLSParseError("session_id longer than 32 bytes")
    suites = r.vector(2, "cipher_suites")
    if suites.left == 0:
        raise TLSParseError("no cipher suites")
    cipher_suites = tuple(s for s in suites.uint16s("cipher_suites") if not _is_grease(s))
    if r.vector(1, "compression_methods").left == 0:
        raise TLSParseError("no compression methods")

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    sigalgs: tuple[int, ...] = ()
    if r.left:
        extensions = r.vector(2, "extensions")
        r.done("ClientHello")
        seen: set[int] = set()
        while extensions.left:
            ext_type = extensions.uint(2, "extension type")
            ext = extensions.vector(2, f"extension {ext_type}")
            if ext_type in seen:
                raise TLSParseError(f"extension {ext_type} sent twice")
            seen.add(ext_type)
            if ext_type == EXT_SERVER_NAME:
                sni = _server_name(ext)
            elif ext_type == EXT_ALPN:
                alpn = _alpn(ext)
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                listed = ext.vector(1, "supported_versions")
                ext.done("supported_versions")
                versions = tuple(
                    v for v in listed.uint16s("supported_versions") if not _is_grease(v)
                )
            elif ext_type == EXT_SIGNATURE_ALGORITHMS:
                listed = ext.vector(2, "signature_algorithms")
                ext.done("signature_algorithms")
                sigalgs = tuple(
                    s for s in listed.uint16s("signature_algorithms") if not _is_grease(s)
                )
    if not versions:
        versions = (legacy_version,)
    return ClientHello(sni, alpn, versions, cipher_suites, sigalgs, legacy_version, size)


def _server_name(ext: _Reader) -> str | None:
    """The ``host_name`` entry (RFC 6066 §3), lower-cased; other name types are skipped."""
    names = ext.vector(2, "server_name_list")
    ext.done("server_name")
    found: str | None = None
    while names.left:
        name_type = names.uint(1, "server_name type")
        name = names.vector(2, "server_name").rest()
        if name_type != 0:
            continue
        if found is not None:
            raise TLSParseError("more than one host_name in server_name")
        if not name or len(name) > 255:
            raise TLSParseError("empty or over-long server name")
        if any(b <= 0x20 or b >= 0x7F for b in name):
            raise TLSParseError("server name is not printable ASCII")
        found = name.decode("ascii").lower()
    return found


def _alpn(ext: _Reader) -> tuple[str, ...]:
    protocols = ext.vector(2, "alpn")
    ext.done("alpn")
    out: list[str] = []
    while protocols.left:
        proto = protocols.vector(1, "alpn protocol").rest()
        if not proto:
            raise TLSParseError("empty ALPN protocol name")
        out.append(proto.decode("latin-1"))
    if not out:
        raise TLSParseError("empty ALPN list")
    return tuple(out)


def client_hello_sni(data: bytes | bytearray | memoryview) -> tuple[str | None] | None:
    """Only the server name of the ClientHello at the start of ``data``: ``(sni,)`` (``sni``
    ``None`` when the hello names none), ``None`` if more bytes are needed, or raise as
    :func:`parse_client_hello` does.

    What a listener routes by, at a tenth of the full parse's cost: a hello in one record
    (what clients send) is walked in place, looking into no extension but ``server_name``;
    anything else (several records, an odd or malformed structure, an odd ``server_name``)
    gets the full parse, so its answers and errors are the same, except that malformed
    contents of *other* extensions (ALPN, versions, signature algorithms) are left to whoever
    terminates the TLS.  Hand-written because the cost is the point: the full parse was a
    tenth of the CPU of serving a TLS connection."""
    raw = bytes(data[:MAX_SNIFF_BYTES])
    try:
        found = _single_record_sni(raw)
    except IndexError:
        found = None
    if found is None:
        hello = parse_client_hello(data)
        return None if hello is None else (hello.sni,)
    return found


def _single_record_sni(raw: bytes) -> tuple[str | None] | None:
    """``(sni,)`` from a well-formed one-record hello; ``None``: let the full parse decide."""
    if len(raw) < 9 or raw[0] != _RECORD_HANDSHAKE or raw[1] != 3 or raw[2] > 4:
        return None
    record = (raw[3] << 8) | raw[4]
    if not 0 < record <= _MAX_RECORD or len(raw) < 5 + record or raw[5] != _HANDSHAKE_CLIENT_HELLO:
        return None
    end = 9 + ((raw[6] << 16) | (raw[7] << 8) | raw[8])
    if end > 5 + record or end - 9 > MAX_CLIENT_HELLO:
        return None
    pos = 9 + 2 + 32
    if raw[pos] > 32:
        return None
    pos += 1 + raw[pos]
    suites = (raw[pos] << 8) | raw[pos + 1]
    if not suites or suites % 2:
        return None
    pos += 2 + suites
    if not raw[pos]:
        return None
    pos += 1 + raw[pos]
    if pos == end:
        return (None,)
    if pos + 2 + ((raw[pos] << 8) | raw[pos + 1]) != end:
        return None
    pos += 2
    sni: str | None = None
    seen: set[int] = set()
    while pos < end:
        kind, size = (raw[pos] << 8) | raw[pos + 1], (raw[pos + 2] << 8) | raw[pos + 3]
        pos += 4
        if pos + size > end or kind in seen:
            return None
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            sni = _one_host_name(raw[pos : pos + size])
            if sni is None:
                return None
        pos += size
    return (sni,)


def _one_host_name(ext: bytes) -> str | None:
    """The extension's one ``host_name``, if it is exactly that; ``None`` otherwise."""
    if len(ext) < 5 or ((ext[0] << 8) | ext[1]) != len(ext) - 2 or ext[2] != 0:
        return None
    size = (ext[3] << 8) | ext[4]
    name = ext[5:]
    if size != len(name) or not name or size > 255 or not name.isascii():
        return None
    if any(b <= 0x20 or b == 0x7F for b in name):
        return None
    return name.decode("ascii").lower()
