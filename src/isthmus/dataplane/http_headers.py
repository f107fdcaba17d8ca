"""Header policy of an Istio gateway's Envoy, as pure functions over ``(name, value)`` lists.

Names arrive lower-cased from the codec and leave lower-cased (Envoy's HTTP/1 codec writes
lower-case keys too).  Everything here runs once per request, so it avoids per-header objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from isthmus.proto.http1 import connection_options

Headers = list[tuple[str, str]]

# RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones Envoy also drops.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "http2-settings",
    }
)
SERVER = "istio-envoy"


#: ``Connection`` values that name no other header (the usual ones).
_PLAIN_CONNECTION = frozenset(("keep-alive", "close", "upgrade", "Keep-Alive", "Close", "Upgrade"))


def connection_tokens(headers: Sequence[tuple[str, str]]) -> frozenset[str]:
    """Names listed in ``Connection``: they are hop-by-hop for this message too."""
    tokens: frozenset[str] = frozenset()
    for name, value in headers:
        if name == "connection" and value not in _PLAIN_CONNECTION:
            tokens |= connection_options(value)
    return tokens


#: Request headers never passed upstream as sent: hop-by-hop ones, and the ones the proxy sets
#: itself (the body is re-framed, so ``content-length`` too).
_NOT_FORWARDED = HOP_BY_HOP | {"x-forwarded-proto", "x-request-id", "content-length"}


def upstream_request_headers(
    headers: Sequence[tuple[str, str]],
    *,
    peer_ip: str,
    scheme: str,
    request_id: str,
    trusted_hops: int = 0,
    upgrade: str | None = None,
    authority: str | None = None,
) -> tuple[Headers, str]:
    """Headers to send upstream and the trusted client address (``authority``: the Host to
    send instead of the client's).

    Hop-by-hop headers and those named in ``Connection`` go; client-sent ``x-envoy-*``
    go (an edge proxy trusts none); ``x-forwarded-for`` gets the peer appended, and with
    ``trusted_hops`` (Istio ``numTrustedProxies``) the client address is read that many hops
    back; ``x-forwarded-proto`` is the downstream scheme; ``x-request-id`` is this request's.
    """
    out: Headers = []
    xff = ""
    named: frozenset[str] = frozenset()
    not_forwarded = _NOT_FORWARDED
    for header in headers:
        name = header[0]
        if name in not_forwarded:
            if name == "connection" and header[1] not in _PLAIN_CONNECTION:
                named = connection_tokens(headers)
            continue
        if name.startswith("x-envoy-"):
            continue
        if name == "x-forwarded-for":
            xff = f"{xff},{header[1]}" if xff else header[1]
            continue
        if name == "host" and authority is not None:
            header = (name, authority)
        out.append(header)
    if named:
        out = [h for h in out if h[0] not in named]
    client = peer_ip
    if xff:
        hops = [h.strip() for h in xff.split(",") if h.strip()]
        if trusted_hops and len(hops) >= trusted_hops:
            client = hops[len(hops) - trusted_hops]
        hops.append(peer_ip)
        forwarded_for = ", ".join(hops)
    else:
        forwarded_for = peer_ip
    out += (
        ("x-forwarded-for", forwarded_for),
        ("x-forwarded-proto", scheme),
        ("x-request-id", request_id),
        ("x-envoy-external-address", client),
    )
    if upgrade:
        out.append(("connection", "upgrade"))
        out.append(("upgrade", upgrade))
    return out, client


TRACE_HEADERS = ("x-b3-traceid", "b3", "traceparent")


def add_trace(headers: Headers, sample_percent: float, rng_bits: int) -> None:
    """``--tracing``: B3 as an Istio gateway's Zipkin tracer does it.

    An incoming trace (B3 or W3C ``traceparent``) continues: the gateway's span becomes the
    child of the caller's (``x-b3-parentspanid`` = the caller's span, a new ``x-b3-spanid``).
    Without one, a new trace starts, sampled at ``sample_percent``.
    """
    span = f"{rng_bits & 0xFFFFFFFFFFFFFFFF:016x}"
    incoming = {
        n: v for n, v in headers if n in ("x-b3-traceid", "x-b3-spanid", "b3", "traceparent")
    }
    if not incoming:
        trace = f"{(rng_bits >> 64) & ((1 << 128) - 1):032x}"
        sampled = "1" if (rng_bits % 10000) < sample_percent * 100 else "0"
        headers.extend((("x-b3-traceid", trace), ("x-b3-spanid", span), ("x-b3-sampled", sampled)))
        return
    parent = incoming.get("x-b3-spanid")
    if parent is None and "traceparent" in incoming:
        parts = incoming["traceparent"].split("-")
        parent = parts[2] if len(parts) >= 3 else None
    if "x-b3-traceid" in incoming or "traceparent" in incoming:
        headers[:] = [(n, v) for n, v in headers if n not in ("x-b3-spanid", "x-b3-parentspanid")]
        if "x-b3-traceid" not in incoming and "traceparent" in incoming:
            headers.append(("x-b3-traceid", incoming["traceparent"].split("-")[1]))
        headers.append(("x-b3-spanid", span))
        if parent:
            headers.append(("x-b3-parentspanid", parent))


#: Response fields the proxy never passes on as sent: hop-by-hop ones and ``server`` (its
#: own).  ``content-length`` goes too where the response has no length of its own (1xx, 204).
RESPONSE_DROP = HOP_BY_HOP | {"server"}
RESPONSE_DROP_LENGTH = RESPONSE_DROP | {"content-length"}
_strippers: dict[frozenset[str], re.Pattern[bytes]] = {}
#: ``Connection`` tokens that name no field (or one dropped anyway).
_NAMES_NO_FIELD = frozenset(("close", "keep-alive", "upgrade"))


def _compile(names: Iterable[str]) -> re.Pattern[bytes]:
    """One regular expression that removes every field named in ``names`` from a raw
    header block (one C-level pass instead of a Python step per field)."""
    alternatives = b"|".join(re.escape(n.encode("latin-1")) for n in sorted(names))
    return re.compile(rb"\r\n(?:" + alternatives + rb"):[^\r]*", re.IGNORECASE)


def response_fields(raw: bytes, drop: frozenset[str], connection: str = "") -> bytes:
    """The upstream's header block (``ResponseHead.raw``) as the client gets it: the fields
    named in ``drop`` (lower-case) and in its ``Connection`` value removed, the rest byte
    for byte as sent."""
    if not raw:
        return raw
    if connection and connection not in _PLAIN_CONNECTION:
        named = connection_options(connection) - _NAMES_NO_FIELD
        if named:  # names chosen by the upstream: not worth a cache entry
            return _compile(drop | named).sub(b"", raw)
    pattern = _strippers.get(drop)
    if pattern is None:
        pattern = _compile(drop)
        if len(_strippers) < 1024:  # route header ops: a few sets per snapshot
            _strippers[drop] = pattern
    return pattern.sub(b"", raw)


def encode_fields(headers: Iterable[tuple[str, str]]) -> bytes:
    """``(name, value)`` pairs as header lines, each preceded by CRLF (``ResponseHead.raw``'s
    form).  Values read from a message are latin-1 and go back as the bytes they were; only a
    configured value can be outside latin-1, and is then sent as UTF-8, as Envoy does."""
    text = "".join([f"\r\n{n}: {v}" for n, v in headers])
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def header_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n == name:
            return v
    return None
