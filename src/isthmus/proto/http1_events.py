"""What the HTTP/1.1 codec produces: events, the limits it enforces and its one error type.

Heads are ``NamedTuple``\\ s so the parsers can build them with a single ``tuple.__new__``
(about a third of the cost of a slotted ``__init__`` with twelve fields); the small events are
slotted dataclasses so that ``Body(b"x") != Upgrade(b"x")``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import NamedTuple

Headers = list[tuple[str, str]]

#: Header names as sent -> lower-cased ``str``, filled as names are seen (up to a bound), so a
#: known name costs one dict lookup instead of a decode and a ``lower()``. Names with an
#: underscore are never cached: a cache hit proves there is none.
NAMES: dict[bytes, str] = {}
NAMES_MAX = 2048


def connection_options(value: str) -> frozenset[str]:
    """The options a ``Connection`` value lists (RFC 9110 §7.6.1), lower-cased: comma-separated
    tokens with optional spaces and tabs around them, empty elements ignored."""
    return frozenset(t for t in (t.strip(" \t").lower() for t in value.split(",")) if t)


def name_key(name: bytes) -> str:
    """The lower-cased name, remembered for next time unless the cache is full."""
    key = name.decode("latin-1").lower()
    if len(NAMES) < NAMES_MAX and "_" not in key:
        key = NAMES[name] = sys.intern(key)
    return key


@dataclass(frozen=True, slots=True)
class Limits:
    """Envoy's edge defaults for one listener; each can be changed per gateway.

    ``max_request_headers_bytes`` counts the request-target plus every header name and value,
    as Envoy's ``max_request_headers_kb`` does. A head that is still incomplete once this many
    bytes (plus ``HEAD_SLACK`` for framing) have arrived is rejected without waiting for the
    rest, so a slow client can never make the parser buffer more.
    """

    max_request_headers_bytes: int = 60 * 1024
    max_request_headers_count: int = 100
    #: ``headers_with_underscores_action: REJECT_REQUEST`` (Istio gateways can set it).
    reject_underscore_headers: bool = True
    #: ``merge_slashes`` on top of ``normalize_path`` (always on).
    merge_slashes: bool = True
    #: Envoy's ``accept_http_10``; Istio leaves it off unless ``ISTIO_META_HTTP10`` is set, and
    #: Envoy then answers HTTP/1.0 with 426. On by default here so plain 1.0 clients work.
    accept_http_10: bool = True
    #: Envoy's fixed upstream limits (``MAX_RESPONSE_HEADERS_KB`` and the default count).
    max_response_headers_bytes: int = 80 * 1024
    max_response_headers_count: int = 100


DEFAULT_LIMITS = Limits()
#: Bytes allowed on top of a header-size limit for what the limit does not count (CRLFs,
#: ``": "``, the method and version) before an unfinished head is refused.
HEAD_SLACK = 8 * 1024


class ProtocolError(Exception):
    """The peer sent bytes that are not acceptable HTTP/1.1; never a bug of ours.

    ``status`` is the answer to give (400 or 431 for a client, 426 for a refused HTTP/1.0,
    502/503 for an upstream), ``details`` is Envoy's response code detail for access logs
    (``http1.invalid_characters``, ``http1.headers_too_large``, ...), ``reason`` a sentence for
    humans. ``events`` holds what the failing ``feed`` call decoded before the error: whole
    pipelined requests that preceded the bad one, and possibly the start of the bad one.
    """

    def __init__(self, status: int, reason: str, details: str) -> None:
        super().__init__(f"{status} {details}: {reason}")
        self.status = status
        self.reason = reason
        self.details = details
        self.events: list[RequestEvent | ResponseEvent] = []


class RequestHead(NamedTuple):
    """A request line and its headers, checked and with the path normalized for routing.

    ``target`` is the request-target as sent; ``path`` is what routing sees (dot-segments
    removed, slashes merged, unreserved percent-escapes decoded; the path of an absolute-form
    target; ``""`` for CONNECT, ``"*"`` for ``OPTIONS *``); ``query`` is the raw text after ``?``.
    ``headers`` keeps every field in order, names lower-cased, values as sent. ``host`` is the
    Host header, or the authority of an absolute-form target. ``upgrade`` is the lower-cased
    ``Upgrade`` value when the request asks for one (``Connection: upgrade``); an ``h2c``
    upgrade is ignored, as Envoy does, and the request parsed as plain HTTP/1.1.
    """

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    host: str | None
    keep_alive: bool
    content_length: int | None
    chunked: bool
    upgrade: str | None
    expect_continue: bool


class ResponseHead(NamedTuple):
    """A status line and its headers.

    Interim responses (1xx other than 101) are heads with no body and no ``EndOfMessage``: the
    next event is the next head. ``content_length`` is the header's value also where it
    describes no body here (HEAD, 304); it is ``None`` for 1xx and 204, which cannot carry it.
    A final response with neither length nor chunking is read until the connection closes
    (``keep_alive`` is then false): call ``ResponseParser.feed_eof``.

    The header fields stay as the upstream sent them, ``raw``: each line preceded by CRLF
    (``b"\r\nServer: nginx\r\nContent-Length: 3"``), checked by llhttp.  A proxy passes most
    of them on untouched, so the hot path edits those bytes instead of building a list;
    :attr:`headers` parses them for everything else.  ``connection`` is the lower-cased
    ``Connection`` value(s), comma-joined (``""`` when absent).
    """

    status: int
    reason: str
    version: str
    raw: bytes
    keep_alive: bool
    content_length: int | None
    chunked: bool
    connection: str = ""

    @property
    def headers(self) -> Headers:
        """``(lower-cased name, value)`` pairs, in order (parsed on each call)."""
        out: Headers = []
        for line in self.raw.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            out.append((NAMES.get(name) or name_key(name), value.strip(b" \t").decode("latin-1")))
        return out


@dataclass(slots=True)
class Body:
    """Some body bytes, de-chunked, in the order they arrived."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The message is complete; for a request, the parser is ready for the next one."""


@dataclass(slots=True)
class Upgrade(EndOfMessage):
    """Ends the last HTTP message on this connection: what follows is another protocol.

    It replaces ``EndOfMessage`` after a request that asked for an upgrade (or a CONNECT) and
    after a 101 response. ``rest`` is what arrived after the head in the same ``feed``; the
    parser takes no more data.
    """

    rest: bytes = field(default=b"")


END_OF_MESSAGE = EndOfMessage()

RequestEvent = RequestHead | Body | EndOfMessage
ResponseEvent = ResponseHead | Body | EndOfMessage
