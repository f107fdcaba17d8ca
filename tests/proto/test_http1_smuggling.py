"""Request smuggling: every ambiguous framing is a clean 400, or exactly what the client sent.

Each case is either ``(status, details)``, the refusal the parser must give, or the transcript
of the requests the client really sent: the same whether the bytes arrive whole or cut at any
point, and never a request hidden in a body.
"""

from __future__ import annotations

import pytest

from isthmus.proto.http1 import ProtocolError, RequestHead
from tests.proto.util import heads, request_error, request_events, shape

P = b"POST / HTTP/1.1\r\nHost: a\r\n"
SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"  # 32 bytes
CHUNKED_BODY = b"0\r\n\r\n" + SMUGGLED
BAD = 400
INVALID_TE = (BAD, "http1.invalid_transfer_encoding")
CL_AND_TE = (BAD, "http1.content_length_not_allowed")
CHARS = (BAD, "http1.invalid_characters")
CODEC = (BAD, "http1.codec_error")

CASES: list[tuple[str, bytes, tuple[int, str] | list[object]]] = [
    # --- CL.TE and TE.CL: both headers, in either order, any values
    (
        "cl.te",
        P + b"Content-Length: 37\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        CL_AND_TE,
    ),
    (
        "te.cl",
        P + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + CHUNKED_BODY,
        CL_AND_TE,
    ),
    (
        "cl0.te",
        P + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        CL_AND_TE,
    ),
    (
        "te.cl-in-trailer",
        P + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 32\r\n\r\n" + SMUGGLED,
        CL_AND_TE,
    ),
    # --- TE.TE: obfuscated or repeated Transfer-Encoding
    ("te-xchunked", P + b"Transfer-Encoding: xchunked\r\n\r\n" + CHUNKED_BODY, INVALID_TE),
    ("te-chunkedx", P + b"Transfer-Encoding: chunkedx\r\n\r\n" + CHUNKED_BODY, INVALID_TE),
    ("te-identity", P + b"Transfer-Encoding: identity\r\n\r\n" + CHUNKED_BODY, INVALID_TE),
    (
        "te-list-identity",
        P + b"Transfer-Encoding: chunked, identity\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),
    ("te-list-gzip", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKED_BODY, INVALID_TE),
    ("te-list-empty", P + b"Transfer-Encoding: ,chunked\r\n\r\n" + CHUNKED_BODY, INVALID_TE),
    (
        "te-twice-identity",
        P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),
    (
        "te-identity-then-chunked",
        P + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),
    (
        "te-gzip-then-chunked",
        P + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),
    (
        "te-twice-chunked",
        P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),
    ("te-space-before-colon", P + b"Transfer-Encoding : chunked\r\n\r\n" + CHUNKED_BODY, CHARS),
    ("te-tab-before-colon", P + b"Transfer-Encoding\t: chunked\r\n\r\n" + CHUNKED_BODY, CHARS),
    ("te-vertical-tab", P + b"Transfer-Encoding:\x0bchunked\r\n\r\n" + CHUNKED_BODY, CHARS),
    ("te-form-feed-after", P + b"Transfer-Encoding: chunked\x0c\r\n\r\n" + CHUNKED_BODY, CHARS),
    ("te-nbsp", P + b"Transfer-Encoding: \xa0chunked\r\n\r\n" + CHUNKED_BODY, INVALID_TE),
    ("te-obs-fold", P + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + CHUNKED_BODY, CHARS),
    (
        "te-obs-fold-after-other",
        P + b"X: y\r\n Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        CODEC,
    ),
    (
        "te-leading-space-line",
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n" + CHUNKED_BODY,
        CODEC,
    ),
    (
        "te-leading-tab-line",
        b"POST / HTTP/1.1\r\n\tTransfer-Encoding: chunked\r\nHost: a\r\n\r\n" + CHUNKED_BODY,
        CHARS,
    ),
    (
        "te-trailing-tab",
        P + b"Transfer-Encoding: chunked\t\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),  # llhttp
    (
        "te-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        INVALID_TE,
    ),
    # legitimately one chunked request: OWS around the value, any case
    (
        "te-tab-ows",
        P + b"Transfer-Encoding:\tchunked\r\n\r\n" + CHUNKED_BODY,
        [("POST", "/"), "end", ("GET", "/admin"), "end"],
    ),
    (
        "te-trailing-spaces",
        P + b"Transfer-Encoding: chunked  \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        [("POST", "/"), b"hello", "end"],
    ),
    (
        "te-leading-ows",
        P + b"Transfer-Encoding: \t chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        [("POST", "/"), b"hello", "end"],
    ),
    (
        "te-case",
        P + b"Transfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        [("POST", "/"), b"hello", "end"],
    ),
    # --- line endings: only CRLF
    ("lf-only-head", b"POST / HTTP/1.1\nHost: a\nContent-Length: 32\n\n" + SMUGGLED, CODEC),
    (
        "lf-after-header",
        P + b"Content-Length: 32\nTransfer-Encoding: chunked\r\n\r\n" + SMUGGLED,
        CODEC,
    ),
    ("lf-ends-head", P + b"Content-Length: 32\r\n\n" + SMUGGLED, CHARS),
    ("cr-only", P + b"Content-Length: 32\r\r\n\r\n" + SMUGGLED, CODEC),
    ("lf-after-chunk-size", P + b"Transfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", CODEC),
    (
        "lf-after-chunk-data",
        P + b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n" + SMUGGLED,
        CODEC,
    ),
    ("lf-after-last-chunk", P + b"Transfer-Encoding: chunked\r\n\r\n0\n\r\n" + SMUGGLED, CODEC),
    # --- Content-Length values
    (
        "cl-duplicate-differing",
        P + b"Content-Length: 0\r\nContent-Length: 32\r\n\r\n" + SMUGGLED,
        CODEC,
    ),
    (
        "cl-duplicate-same",
        P + b"Content-Length: 32\r\nContent-Length: 32\r\n\r\n" + SMUGGLED,
        CODEC,
    ),
    ("cl-list", P + b"Content-Length: 32, 32\r\n\r\n" + SMUGGLED, CODEC),
    ("cl-plus", P + b"Content-Length: +32\r\n\r\n" + SMUGGLED, CODEC),
    ("cl-minus", P + b"Content-Length: -1\r\n\r\n" + SMUGGLED, CODEC),
    ("cl-hex", P + b"Content-Length: 0x20\r\n\r\n" + SMUGGLED, CODEC),
    ("cl-inner-space", P + b"Content-Length: 3 2\r\n\r\n" + SMUGGLED, CODEC),
    ("cl-empty", P + b"Content-Length: \r\n\r\n" + SMUGGLED, CODEC),
    ("cl-overflow", P + b"Content-Length: 99999999999999999999999\r\n\r\n" + SMUGGLED, CODEC),
    ("cl-space-before-colon", P + b"Content-Length : 32\r\n\r\n" + SMUGGLED, CHARS),
    # legitimately one request whose body looks like a request: never parsed as one
    (
        "cl-body-is-a-request",
        P + b"Content-Length: 32\r\n\r\n" + SMUGGLED,
        [("POST", "/"), SMUGGLED, "end"],
    ),
    ("cl-ows", P + b"Content-Length: \t32 \r\n\r\n" + SMUGGLED, [("POST", "/"), SMUGGLED, "end"]),
    (
        "cl-leading-zeros",
        P + b"Content-Length: 0032\r\n\r\n" + SMUGGLED,
        [("POST", "/"), SMUGGLED, "end"],
    ),
    (
        "get-with-body",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 32\r\n\r\n" + SMUGGLED,
        [("GET", "/"), SMUGGLED, "end"],
    ),
    (
        "chunk-is-a-request",
        P + b"Transfer-Encoding: chunked\r\n\r\n20\r\n" + SMUGGLED + b"\r\n0\r\n\r\n",
        [("POST", "/"), SMUGGLED, "end"],
    ),
    (
        "cl0-then-pipelined",
        P + b"Content-Length: 0\r\n\r\n" + SMUGGLED,
        [("POST", "/"), "end", ("GET", "/admin"), "end"],
    ),
    # --- chunk sizes
    (
        "chunk-size-overflow",
        P + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
        CODEC,
    ),
    (
        "chunk-size-invalid-hex",
        P + b"Transfer-Encoding: chunked\r\n\r\n1g\r\nx\r\n0\r\n\r\n",
        CODEC,
    ),
    ("chunk-size-negative", P + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n", CODEC),
    ("chunk-size-0x", P + b"Transfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n", CODEC),
    ("chunk-size-space", P + b"Transfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n", CODEC),
    ("chunk-size-plus", P + b"Transfer-Encoding: chunked\r\n\r\n+1\r\nx\r\n0\r\n\r\n", CODEC),
    (
        "chunk-longer-than-size",
        P + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxx\r\n0\r\n\r\n",
        CODEC,
    ),
    (
        "chunk-extension",
        P + b'Transfer-Encoding: chunked\r\n\r\n5;a=b;c="d"\r\nhello\r\n0\r\n\r\n',
        [("POST", "/"), b"hello", "end"],
    ),
    (
        "chunk-last-many-zeros",
        P + b"Transfer-Encoding: chunked\r\n\r\n0000\r\n\r\n" + SMUGGLED,
        [("POST", "/"), "end", ("GET", "/admin"), "end"],
    ),
    # --- bytes that do not belong in a head
    ("nul-in-value", P + b"X: a\x00b\r\n\r\n", CHARS),
    ("cr-in-value", P + b"X: a\rb\r\n\r\n", CODEC),
    ("del-in-value", P + b"X: a\x7fb\r\n\r\n", CHARS),
    ("nul-in-name", P + b"X\x00: 1\r\n\r\n", CHARS),
    ("space-in-name", P + b"X Y: 1\r\n\r\n", CHARS),
    ("empty-name", P + b": 1\r\n\r\n", CHARS),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", CODEC),
    ("nul-in-target", b"GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", (BAD, "http1.invalid_url")),
    ("bad-version", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", CODEC),
    ("http2-version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", CODEC),
    ("http09-version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", CODEC),
    ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", CODEC),
    ("lower-case-method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", CODEC),
    # --- requests after "Connection: close" are never served
    (
        "after-close",
        P + b"Connection: close\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,
        [("POST", "/"), "end"],
    ),
    # --- an upgrade must not carry a body the upstream could read as a request
    (
        "upgrade-with-cl",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Content-Length: 32\r\n\r\n" + SMUGGLED,
        (BAD, "http1.body_disallowed"),
    ),
    (
        "h2c-body-is-a-request",
        P + b"Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 32\r\n\r\n" + SMUGGLED,
        [("POST", "/"), SMUGGLED, "end"],
    ),
    (
        "h2c-chunk-is-a-request",
        P
        + b"Upgrade: h2c\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n"
        + SMUGGLED
        + b"\r\n0\r\n\r\n",
        [("POST", "/"), SMUGGLED, "end"],
    ),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_smuggling(data: bytes, expected: tuple[int, str] | list[object]) -> None:
    if isinstance(expected, tuple):
        error = request_error(data)
        assert (error.status, error.details) == expected, error.reason
        assert len([h for h in heads(error.events) if h.target == "/admin"]) == 0  # type: ignore[union-attr]
        return
    whole = request_events(data)
    assert shape(whole) == expected
    for cut in range(1, len(data)):
        assert request_events([data[:cut], data[cut:]]) == whole, cut


@pytest.mark.parametrize(
    ("data", "expected"),
    [c[1:] for c in CASES if isinstance(c[2], tuple)],
    ids=[c[0] for c in CASES if isinstance(c[2], tuple)],
)
def test_refusals_do_not_depend_on_how_bytes_arrive(data: bytes, expected: tuple[int, str]) -> None:
    for cut in range(1, len(data), 7):
        with pytest.raises(ProtocolError) as caught:
            request_events([data[:cut], data[cut:]])
        assert caught.value.status == expected[0], cut


def test_no_second_request_ever_comes_from_a_refused_one() -> None:
    for _, data, expected in CASES:
        if isinstance(expected, tuple):
            error = request_error(data)
            assert all(
                isinstance(h, RequestHead) and h.target != "/admin" for h in heads(error.events)
            )
