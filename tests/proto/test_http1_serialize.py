"""Heads and chunks as bytes, and what the parsers make of them."""

from __future__ import annotations

import pytest

from isthmus.proto.http1 import (
    LAST_CHUNK,
    STATUS_LINES,
    Body,
    RequestHead,
    ResponseHead,
    chunk,
    serialize_request_head,
    serialize_response_head,
)
from tests.proto.util import request_events, response_events

HEADERS = [
    ("host", "a.example"),
    ("x-forwarded-for", "10.0.0.1"),
    ("x-multi", "1"),
    ("x-multi", "2"),
]


def test_request_head() -> None:
    assert serialize_request_head("GET", "/p?q=1", HEADERS) == (
        b"GET /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-forwarded-for: 10.0.0.1\r\n"
        b"x-multi: 1\r\nx-multi: 2\r\n\r\n"
    )
    assert serialize_request_head("OPTIONS", "*", []) == b"OPTIONS * HTTP/1.1\r\n\r\n"


def test_response_head() -> None:
    assert serialize_response_head(200, None, [("content-length", "0")]) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    )
    assert serialize_response_head(404, None, []) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert serialize_response_head(299, None, []) == b"HTTP/1.1 299 Unknown\r\n\r\n"
    assert serialize_response_head(200, "Fine", []) == b"HTTP/1.1 200 Fine\r\n\r\n"
    assert STATUS_LINES[431] == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    assert STATUS_LINES[413] == b"HTTP/1.1 413 Payload Too Large\r\n"
    assert STATUS_LINES[503] == b"HTTP/1.1 503 Service Unavailable\r\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda: serialize_request_head("GET", "/", [("x", "a\r\nInjected: 1")]),
        lambda: serialize_request_head("GET", "/", [("x\r\nInjected", "1")]),
        lambda: serialize_request_head("GET", "/", [("x", "a\nb")]),
        lambda: serialize_request_head("GET", "/", [("x", "a\rb")]),
        lambda: serialize_request_head("GET", "/ HTTP/1.1\r\nX: y", []),
        lambda: serialize_response_head(200, None, [("set-cookie", "a=1\r\n\r\n<html>")]),
        lambda: serialize_response_head(200, "OK\r\nX: y", []),
        lambda: serialize_response_head(1000, None, []),
        lambda: serialize_response_head(99, "Low", []),
    ],
)
def test_no_header_injection(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_chunks() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert chunk(b"") == b""  # an empty chunk would end the body
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_what_we_write_parses_back() -> None:
    data = serialize_request_head("POST", "/up", [*HEADERS, ("transfer-encoding", "chunked")])
    data += chunk(b"hello") + chunk(b"") + chunk(b" world") + LAST_CHUNK
    head, body, _ = request_events(data)
    assert isinstance(head, RequestHead) and head.headers[:4] == HEADERS and head.chunked
    assert body == Body(b"hello world")
    response = serialize_response_head(200, None, [("content-length", "2")]) + b"ok"
    (rhead, rbody, _), _ = response_events("GET", response)
    assert isinstance(rhead, ResponseHead) and (rhead.status, rhead.reason) == (200, "OK")
    assert rbody == Body(b"ok")
