"""RequestParser transcripts: bytes from a client in, events out."""

from __future__ import annotations

import pytest

from isthmus.proto.http1 import (
    END_OF_MESSAGE,
    Body,
    EndOfMessage,
    ProtocolError,
    RequestHead,
    RequestParser,
    Upgrade,
)
from tests.proto.util import heads, merged, request_error, request_events, shape

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"
POST_CL = b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
POST_CHUNKED = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: dropped\r\n\r\n"
)


def test_get_head_fields() -> None:
    assert request_events(GET) == [
        RequestHead(
            method="GET",
            target="/index.html?q=1",
            path="/index.html",
            query="q=1",
            version="1.1",
            headers=[("host", "www.example.com"), ("accept", "*/*")],
            host="www.example.com",
            keep_alive=True,
            content_length=None,
            chunked=False,
            upgrade=None,
            expect_continue=False,
        ),
        END_OF_MESSAGE,
    ]


def test_header_names_lower_cased_values_as_sent_order_kept() -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-B: Two  Words\r\nX-A: 1\r\nx-b: again\r\n"
        b"Cookie: a=1; b=2\r\nX-Obs: caf\xe9\r\n\r\n"
    )
    (head, _) = request_events(data)
    assert isinstance(head, RequestHead)
    assert head.headers == [
        ("host", "a"),
        ("x-b", "Two  Words"),
        ("x-a", "1"),
        ("x-b", "again"),
        ("cookie", "a=1; b=2"),
        ("x-obs", "caf\xe9"),
    ]


@pytest.mark.parametrize(
    ("data", "body", "content_length", "chunked"),
    [
        (POST_CL, b"hello", 5, False),
        (POST_CHUNKED, b"hello world", None, True),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", None, 0, False),
    ],
    ids=["content-length", "chunked-with-trailers", "empty"],
)
def test_post_bodies(
    data: bytes, body: bytes | None, content_length: int | None, chunked: bool
) -> None:
    events = request_events(data)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.content_length, head.chunked) == (content_length, chunked)
    assert events[1:] == ([Body(body)] if body else []) + [END_OF_MESSAGE]
    assert "x-trailer" not in dict(head.headers)  # trailers are dropped, as Envoy does


def test_chunked_post_then_get_split_at_every_byte() -> None:
    data = POST_CHUNKED + GET
    whole = request_events(data)
    assert shape(whole) == [
        ("POST", "/up"),
        b"hello world",
        "end",
        ("GET", "/index.html?q=1"),
        "end",
    ]
    for cut in range(1, len(data)):
        assert request_events([data[:cut], data[cut:]]) == whole, cut
    assert request_events([data[i : i + 1] for i in range(len(data))]) == whole


def test_body_streams_without_buffering() -> None:
    parser = RequestParser()
    head = b"PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"
    assert [type(e) for e in parser.feed(head)] == [RequestHead]
    for _ in range(9):
        assert parser.feed(b"x" * 100_000) == [Body(b"x" * 100_000)]
    assert parser.feed(b"") == []
    assert parser.feed(b"y" * 100_000) == [Body(b"y" * 100_000), END_OF_MESSAGE]


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = GET.replace(b"/index.html?q=1", b"/1") + POST_CL + GET.replace(b"/index.html?q=1", b"/3")
    assert shape(request_events(data)) == [
        ("GET", "/1"),
        "end",
        ("POST", "/form"),
        b"hello",
        "end",
        ("GET", "/3"),
        "end",
    ]


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", None, True),
        (b"1.1", b"close", False),
        (b"1.1", b"Close", False),
        (b"1.1", b"keep-alive", True),
        (b"1.0", None, False),
        (b"1.0", b"keep-alive", True),
        (b"1.0", b"Keep-Alive", True),
        (b"1.0", b"close", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost: a\r\n"
    if connection is not None:
        data += b"Connection: " + connection + b"\r\n"
    (head, _) = request_events(data + b"\r\n")
    assert isinstance(head, RequestHead)
    assert head.keep_alive is keep_alive
    assert head.version == version.decode()


def test_nothing_is_parsed_after_a_request_without_keep_alive() -> None:
    parser = RequestParser()
    close = b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    assert shape(parser.feed(close + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")) == [
        ("GET", "/1"),
        "end",
    ]
    assert parser.feed(b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n") == []
    http10 = RequestParser()
    assert shape(http10.feed(b"GET /1 HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n")) == [
        ("GET", "/1"),
        "end",
    ]


def test_websocket_upgrade_hands_over_the_bytes_after_the_head() -> None:
    parser = RequestParser()
    head = (
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n"
        b"Connection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    events = parser.feed(head[:20]) + parser.feed(head[20:] + b"\x81\x05hello")
    assert shape(events) == [("GET", "/chat"), ("upgrade", b"\x81\x05hello")]
    assert isinstance(events[0], RequestHead) and events[0].upgrade == "websocket"
    assert isinstance(events[1], EndOfMessage)  # Upgrade ends the message too
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_upgrade_header_without_connection_upgrade_is_a_plain_request() -> None:
    events = request_events(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
    assert isinstance(events[0], RequestHead) and events[0].upgrade is None
    assert events[1:] == [END_OF_MESSAGE]


H2C = b"Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /1 HTTP/1.1\r\nHost: a\r\n" + H2C + b"\r\n", [("GET", "/1"), "end"]),
        (
            b"POST /1 HTTP/1.1\r\nHost: a\r\n" + H2C + b"Content-Length: 5\r\n\r\nhello",
            [("POST", "/1"), b"hello", "end"],
        ),
        (
            b"POST /1 HTTP/1.1\r\nHost: a\r\n" + H2C + b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            [("POST", "/1"), b"hello", "end"],
        ),
    ],
    ids=["no-body", "content-length", "chunked"],
)
def test_h2c_upgrade_is_ignored_like_envoy(request_bytes: bytes, expected: list[object]) -> None:
    data = request_bytes + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    whole = request_events(data)
    assert shape(whole) == [*expected, ("GET", "/2"), "end"]
    assert all(h.upgrade is None for h in heads(whole))  # type: ignore[union-attr]
    for cut in range(1, len(data)):
        assert request_events([data[:cut], data[cut:]]) == whole, cut


def test_connect_is_reported_then_the_parser_stops() -> None:
    events = request_events(
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01"
    )
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.path, head.host) == (
        "CONNECT",
        "a.example:443",
        "",
        "a.example:443",
    )
    assert events[1:] == [Upgrade(b"\x16\x03\x01")]


@pytest.mark.parametrize(
    "data",
    [
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Content-Length: 2\r\n\r\nab",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: Upgrade\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["connect", "websocket-cl", "upgrade-chunked"],
)
def test_upgrade_with_a_body_is_refused(data: bytes) -> None:
    error = request_error(data)
    assert (error.status, error.details) == (400, "http1.body_disallowed")


def test_expect_continue() -> None:
    data = b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    parser = RequestParser()
    (head,) = parser.feed(data)
    assert isinstance(head, RequestHead) and head.expect_continue
    assert parser.feed(b"ok") == [Body(b"ok"), END_OF_MESSAGE]


@pytest.mark.parametrize(
    ("target", "host", "path", "query", "seen_host"),
    [
        (b"http://a.example/x?y=1", b"a.example", "/x", "y=1", "a.example"),
        (b"HTTP://A.example", b"a.EXAMPLE", "/", "", "A.example"),
        (b"https://a.example:8443/p/../q", b"a.example:8443", "/q", "", "a.example:8443"),
        (b"http://a.example?x", b"a.example", "/", "x", "a.example"),
    ],
)
def test_absolute_form_uses_its_path(
    target: bytes, host: bytes, path: str, query: str, seen_host: str
) -> None:
    (head, _) = request_events(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert (head.target, head.path, head.query, head.host) == (
        target.decode(),
        path,
        query,
        seen_host,
    )


def test_absolute_form_gives_the_host_to_an_http10_request_without_one() -> None:
    (head, _) = request_events(b"GET http://a.example/x HTTP/1.0\r\n\r\n")
    assert isinstance(head, RequestHead) and head.host == "a.example"


def test_asterisk_form_is_for_options_only() -> None:
    (head, _) = request_events(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead) and head.path == "*"
    assert request_error(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n").details == "http1.invalid_url"


def test_path_is_normalized_and_target_kept() -> None:
    (head, _) = request_events(b"GET /a/./b/../%63//d?x=/../y HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert (head.target, head.path, head.query) == ("/a/./b/../%63//d?x=/../y", "/a/c/d", "x=/../y")


def test_other_methods_pass_through() -> None:
    (head, _) = request_events(b"PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead) and head.method == "PROPFIND"


def test_memoryview_input() -> None:
    data = bytearray(POST_CL + GET)
    view = memoryview(data)
    assert request_events([view[:30], view[30:]]) == request_events(bytes(data))


def test_an_error_sticks_and_carries_what_came_before() -> None:
    parser = RequestParser()
    with pytest.raises(ProtocolError) as caught:
        parser.feed(GET + b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
    error = caught.value
    assert (error.status, error.details) == (400, "http1.invalid_characters")
    assert shape(merged(error.events)) == [("GET", "/index.html?q=1"), "end"]
    with pytest.raises(ProtocolError) as again:
        parser.feed(GET)
    assert again.value is error


def test_feed_eof() -> None:
    parser = RequestParser()
    parser.feed(GET)
    assert parser.feed_eof() == []
    cut = RequestParser()
    cut.feed(POST_CL[:-2])
    with pytest.raises(ProtocolError) as caught:
        cut.feed_eof()
    assert caught.value.status == 400
