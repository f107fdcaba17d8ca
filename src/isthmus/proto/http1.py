"""HTTP/1.1 without I/O, for both sides of the proxy: bytes in, events out; heads out as bytes.

::

    parser = RequestParser(limits)        # one per client connection
    parser.feed(data)                     # [RequestHead, Body..., EndOfMessage | Upgrade, ...]
    upstream = ResponseParser("GET")      # one per request sent upstream
    upstream.feed(data), upstream.feed_eof(), upstream.reusable
    serialize_request_head(method, target, headers) + chunk(data) + LAST_CHUNK

``feed`` returns a list rather than calling back: building it costs about 0.1 µs a request,
and keeps callers' code a plain loop. A 400-byte GET with 8 headers costs about 3.5 times what
httptools costs with callbacks that only record url and headers (``tests/proto/bench_parser.py``).

llhttp (through ``httptools``) does the tokenizing in C, in its strict mode: CRLF line ends
only, no obs-fold, no whitespace before a colon, no control characters, one Content-Length,
no Content-Length with Transfer-Encoding, chunk sizes checked for overflow. Its callbacks only
record; a head is checked and built once, when it is complete. On top, as Envoy does at the
edge (``Limits``): header count and size (431), underscores in names, ``Transfer-Encoding``
other than exactly ``chunked``, chunked HTTP/1.0, a missing or repeated Host, an absolute-form
target naming another authority, fragments, and path normalization before routing (400).

Where llhttp needed help:

- It accepts any ``HTTP/x.y`` version: only 1.0 and 1.1 pass here.
- It accepts ``Transfer-Encoding: gzip, chunked`` and a second TE header after a first
  non-chunked one; both are refused here (one TE, exactly ``chunked``).
- It accepts fragments and ``*`` for any method in the request-target; both refused here.
- It keeps trailing whitespace in values; values stay as sent, but the ones the parser reads
  (Host, Transfer-Encoding, Upgrade, Expect) are stripped first.
- It refuses identical duplicate Content-Length headers that Envoy would fold: kept strict.
- httptools cannot tell llhttp "no body follows" for a response to HEAD, so that response's
  head is cut out at ``CRLF CRLF`` and fed alone (llhttp only accepts CRLF there).
- httptools has no ``finish()``: a body read until close ends in ``ResponseParser.feed_eof``.
- An ``h2c`` upgrade makes llhttp stop like any upgrade; Envoy ignores h2c, so the parser goes
  on with a fresh llhttp, first replaying the request's body framing if it has a body.
- It refuses bytes after a ``Connection: close`` (or HTTP/1.0) message with an error; here
  they are ignored after that message's events, since the server will close anyway.
- ``feed_data(b"")`` in the middle of a chunk reports an empty body span: empty feeds return
  nothing without reaching llhttp.
- Trailers reach the header callback; they are dropped, as Envoy does by default, and chunk
  framing or trailers that produce no body for more than the header limit are refused.

A request with a body that asks for an upgrade is refused (``http1.body_disallowed``): llhttp
would hand its body to the tunnel, where the upstream may read it as the next request.
"""

from __future__ import annotations

from isthmus.proto.http1_events import (
    DEFAULT_LIMITS,
    END_OF_MESSAGE,
    Body,
    EndOfMessage,
    Headers,
    Limits,
    ProtocolError,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    Upgrade,
    connection_options,
)
from isthmus.proto.http1_path import normalize_path
from isthmus.proto.http1_request import RequestParser
from isthmus.proto.http1_response import ResponseParser
from isthmus.proto.http1_serialize import (
    LAST_CHUNK,
    STATUS_LINES,
    chunk,
    serialize_request_head,
    serialize_response_head,
)

__all__ = [
    "DEFAULT_LIMITS",
    "END_OF_MESSAGE",
    "LAST_CHUNK",
    "STATUS_LINES",
    "Body",
    "EndOfMessage",
    "Headers",
    "Limits",
    "ProtocolError",
    "RequestEvent",
    "RequestHead",
    "RequestParser",
    "ResponseEvent",
    "ResponseHead",
    "ResponseParser",
    "Upgrade",
    "chunk",
    "connection_options",
    "normalize_path",
    "serialize_request_head",
    "serialize_response_head",
]
