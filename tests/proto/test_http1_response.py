"""ResponseParser transcripts: bytes from an upstream in, events out."""

from __future__ import annotations

import pytest

from isthmus.proto.http1 import (
    END_OF_MESSAGE,
    Body,
    ProtocolError,
    ResponseHead,
    ResponseParser,
    Upgrade,
)
from tests.proto.util import heads, merged, response_events, shape

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\n"
)


def test_head_fields() -> None:
    events, parser = response_events("GET", OK)
    assert events == [
        ResponseHead(
            status=200,
            reason="OK",
            version="1.1",
            raw=b"\r\nContent-Type: text/plain\r\nContent-Length: 5",
            keep_alive=True,
            content_length=5,
            chunked=False,
        ),
        Body(b"hello"),
        END_OF_MESSAGE,
    ]
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert head.headers == [("content-type", "text/plain"), ("content-length", "5")]
    assert parser.done and parser.reusable


@pytest.mark.parametrize(
    ("method", "data", "expected", "reusable"),
    [
        ("GET", OK, [200, b"hello", "end"], True),
        ("POST", CHUNKED, [200, b"hello world", "end"], True),
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", [200, "end"], True),
        (
            "GET",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            [200, b"ok", "end"],
            False,
        ),
        ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", [200, b"ok", "end"], False),
        (
            "GET",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            [200, b"ok", "end"],
            True,
        ),
        ("GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", [204, "end"], True),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", [304, "end"], True),
        (
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            [304, "end"],
            True,
        ),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", [200, "end"], True),
        ("HEAD", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", [200, "end"], True),
        ("HEAD", b"HTTP/1.1 200 OK\r\n\r\n", [200, "end"], True),
        ("HEAD", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", [200, "end"], False),
        ("HEAD", b"HTTP/1.0 200 OK\r\n\r\n", [200, "end"], False),
        (
            "HEAD",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            [100, 200, "end"],
            True,
        ),
        (
            "GET",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
            [100, 200, b"x", "end"],
            True,
        ),
        (
            "GET",
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            [103, 204, "end"],
            True,
        ),
    ],
)
def test_transcripts(method: str, data: bytes, expected: list[object], reusable: bool) -> None:
    events, parser = response_events(method, data)
    assert shape(events) == expected
    assert parser.reusable is reusable
    for cut in range(1, len(data)):
        assert response_events(method, [data[:cut], data[cut:]])[0] == events, cut


def test_no_body_statuses_and_head_keep_the_length_they_announce() -> None:
    (head_204, _), _ = response_events(
        "GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n"
    )
    (head_304, _), _ = response_events(
        "GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"
    )
    (head_head, _), _ = response_events("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    assert [h.content_length for h in (head_204, head_304, head_head)] == [None, 3, 1000]  # type: ignore[union-attr]


def test_interim_heads_have_no_end_of_their_own() -> None:
    events, _ = response_events("POST", b"HTTP/1.1 100 Continue\r\n\r\n")
    assert [type(e) for e in events] == [ResponseHead]
    assert events[0].status == 100  # type: ignore[union-attr]


def test_each_head_is_cut_from_the_bytes_however_they_arrive() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 Fine Thanks\r\nX-A:  1 \r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n"
        b"\r\nok"
    )
    events, _ = response_events("POST", data)
    for cut in range(1, len(data)):
        assert response_events("POST", [data[:cut], data[cut:]])[0] == events, cut
    interim, final = heads(events)
    assert isinstance(interim, ResponseHead) and isinstance(final, ResponseHead)
    assert (interim.status, interim.reason, interim.raw) == (100, "Continue", b"")
    assert (final.status, final.reason, final.content_length) == (200, "Fine Thanks", 2)
    assert final.raw == b"\r\nX-A:  1 \r\nContent-Length: 2\r\nConnection: Keep-Alive"
    assert final.connection == "keep-alive"
    assert final.headers == [
        ("x-a", "1"),
        ("content-length", "2"),
        ("connection", "Keep-Alive"),
    ]


def test_body_until_close() -> None:
    parser = ResponseParser("GET")
    events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome")
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert (head.content_length, head.chunked, head.keep_alive) == (None, False, False)
    assert events[1:] == [Body(b"some")]
    assert parser.feed(b" more") == [Body(b" more")]
    assert parser.feed_eof() == [END_OF_MESSAGE]
    assert parser.done and not parser.reusable
    old, _ = response_events("GET", b"HTTP/1.0 200 OK\r\n\r\nold", eof=True)
    assert shape(old) == [200, b"old", "end"]


def test_switching_protocols_hands_over_what_follows() -> None:
    data = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x02hi"
    )
    events, parser = response_events("GET", data)
    assert shape(events) == [101, ("upgrade", b"\x81\x02hi")]
    assert isinstance(events[-1], Upgrade) and not parser.reusable
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_bytes_after_the_response_make_the_connection_unusable() -> None:
    for method, data in [
        ("GET", OK + b"HTTP/1.1 200 OK\r\n\r\n"),
        ("GET", OK + b"junk"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ]:
        events, parser = response_events(method, data)
        assert shape(events)[-1] == "end" and len(heads(events)) == 1
        assert parser.done and not parser.reusable, data
    parser = ResponseParser("GET")
    parser.feed(OK)
    assert parser.reusable
    assert parser.feed(b"x") == [] and not parser.reusable


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            502,
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc", 502),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 502),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", 502),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", 502),
        (b"HTTP/1.1 600 Nope\r\n\r\n", 502),
        (b"HTTP/2.0 200 OK\r\n\r\n", 502),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 502),
        (b"SSH-2.0-OpenSSH_9.6\r\n", 502),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 502),
    ],
)
def test_protocol_errors(data: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        response_events("GET", data)
    assert caught.value.status == status
    assert caught.value.details.endswith("{protocol_error}")


def test_closing_early_is_503_with_the_stage_in_the_details() -> None:
    for data, stage in [
        (b"", "before"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "before"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "after"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "after"),
    ]:
        parser = ResponseParser("GET")
        parser.feed(data)
        with pytest.raises(ProtocolError) as caught:
            parser.feed_eof()
        assert caught.value.status == 503
        assert (
            caught.value.details
            == f"upstream_reset_{stage}_response_started{{connection_termination}}"
        )
        with pytest.raises(ProtocolError):
            parser.feed(b"x")  # the error sticks


def test_response_header_limits() -> None:
    big = b"HTTP/1.1 200 OK\r\nX: " + b"v" * 81 * 1024 + b"\r\nContent-Length: 0\r\n\r\n"
    for method in ("GET", "HEAD"):
        with pytest.raises(ProtocolError) as caught:
            response_events(method, big)
        assert caught.value.status == 502
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n"
    with pytest.raises(ProtocolError):
        response_events("GET", many)
    endless = ResponseParser("HEAD")
    with pytest.raises(ProtocolError):
        for _ in range(200):
            endless.feed(b"X: " + b"v" * 1024 + b"\r\n")


def test_reset_reads_the_next_response_on_the_same_connection() -> None:
    parser = ResponseParser("GET")
    sequence = [
        ("GET", OK, [200, b"hello", "end"]),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", [200, "end"]),
        ("POST", CHUNKED, [200, b"hello world", "end"]),  # after HEAD: a fresh llhttp
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", [204, "end"]),
        ("GET", OK + b"HTTP/1.1 200 OK\r\n", [200, b"hello", "end"]),  # stray bytes
    ]
    for method, data, expected in sequence:
        parser.reset(method)
        assert not parser.done
        assert shape(merged(parser.feed(data))) == expected
    assert not parser.reusable
