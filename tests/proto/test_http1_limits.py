"""Envoy's edge limits and request checks, each at its boundary."""

from __future__ import annotations

import pytest

from isthmus.proto.http1 import Limits, ProtocolError, RequestHead, RequestParser
from isthmus.proto.http1_events import HEAD_SLACK as SLACK
from tests.proto.util import request_error, request_events, shape

KIB = 1024


def head_with(headers: list[bytes], target: bytes = b"/") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def test_100_headers_pass_101_are_431() -> None:
    hundred = [b"Host: a"] + [b"X-%d: v" % i for i in range(99)]
    (head, _) = request_events(head_with(hundred))
    assert isinstance(head, RequestHead) and len(head.headers) == 100
    error = request_error(head_with([*hundred, b"X-100: v"]))
    assert (error.status, error.details) == (431, "http1.too_many_headers")


def test_60_kib_of_target_names_and_values_pass_one_byte_more_is_431() -> None:
    # counted like Envoy: target + every name + every value ("/" + "host" + "a" + "x" + value)
    value = b"v" * (60 * KIB - 7)
    (head, _) = request_events(head_with([b"Host: a", b"X: " + value]))
    assert isinstance(head, RequestHead)
    error = request_error(head_with([b"Host: a", b"X: " + value + b"v"]))
    assert (error.status, error.details) == (431, "http1.headers_too_large")
    long_target = b"/" + b"t" * (60 * KIB - 6)
    request_events(head_with([b"Host: a"], long_target))
    assert request_error(head_with([b"Host: a"], long_target + b"t")).status == 431


@pytest.mark.parametrize("piece", [1 * KIB, 16 * KIB, 200 * KIB])
def test_an_unfinished_head_is_refused_without_buffering_more(piece: int) -> None:
    parser = RequestParser()
    endless = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 400 * KIB
    fed = 0
    with pytest.raises(ProtocolError) as caught:
        while fed < len(endless):
            parser.feed(endless[fed : fed + piece])
            fed += piece
    assert (caught.value.status, caught.value.details) == (431, "http1.headers_too_large")
    assert fed <= 60 * KIB + SLACK + piece


def test_many_small_headers_never_finishing_are_refused() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n")
    with pytest.raises(ProtocolError) as caught:
        for i in range(100_000):
            parser.feed(
                b"X-%06d: vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\r\n" % i
            )
    assert caught.value.status == 431


def test_a_body_in_the_same_read_does_not_count_against_the_next_head() -> None:
    body = b"b" * 200 * KIB
    post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    get = head_with([b"Host: a", b"X: " + b"v" * 50 * KIB])
    data = post + get
    cut = len(post) + 30 * KIB  # one read: the whole body and part of the next head
    events = request_events([data[:cut], data[cut:]])
    assert shape(events)[0::2] == [("POST", "/"), "end", "end"]


def test_chunk_framing_that_never_yields_body_is_refused() -> None:
    parser = RequestParser()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;")
    with pytest.raises(ProtocolError) as caught:
        for _ in range(1000):
            parser.feed(b"e" * KIB)
    assert caught.value.status == 431
    trailers = RequestParser()
    trailers.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ")
    with pytest.raises(ProtocolError):
        for _ in range(1000):
            trailers.feed(b"t" * KIB)


def test_smaller_limits() -> None:
    limits = Limits(max_request_headers_count=2, max_request_headers_bytes=100)
    request_events(head_with([b"Host: a", b"B: b"]), limits)
    assert request_error(head_with([b"Host: a", b"B: b", b"C: c"]), limits).status == 431
    assert request_error(head_with([b"Host: a", b"B: " + b"b" * 100]), limits).status == 431


def test_underscores_in_names_are_refused_by_default() -> None:
    for _ in range(2):  # the second time the name could come from a cache: it must not
        error = request_error(head_with([b"Host: a", b"X_Forwarded_For: 1.2.3.4"]))
        assert (error.status, error.details) == (400, "http1.unexpected_underscore")
    (head, _) = request_events(
        head_with([b"Host: a", b"X_Forwarded_For: 1.2.3.4"]),
        Limits(reject_underscore_headers=False),
    )
    assert isinstance(head, RequestHead) and ("x_forwarded_for", "1.2.3.4") in head.headers


@pytest.mark.parametrize(
    ("data", "status", "details"),
    [
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "missing_host_header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "http.invalid_authority"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "http.invalid_authority"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "http.invalid_authority"),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "http.invalid_authority"),
        (
            b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n",
            400,
            "http.invalid_authority",
        ),
        (
            b"GET http://a.example:8080/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
            400,
            "http.invalid_authority",
        ),
        (
            b"GET http://u:p@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
            400,
            "http1.invalid_url",
        ),
        (b"GET ftp://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400, "http1.invalid_url"),
        (b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.invalid_url"),
        (b"GET /a?b#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.invalid_url"),
        (b"GET http://a/x#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, "http1.invalid_url"),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "http1.invalid_transfer_encoding",
        ),
        (b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path_normalization_failed"),
        (b"GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path_normalization_failed"),
    ],
)
def test_request_checks(data: bytes, status: int, details: str) -> None:
    error = request_error(data)
    assert (error.status, error.details) == (status, details), error.reason


def test_http10_without_host_is_fine_and_can_be_refused_like_envoy() -> None:
    (head, _) = request_events(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(head, RequestHead) and head.host is None
    error = request_error(b"GET / HTTP/1.0\r\n\r\n", Limits(accept_http_10=False))
    assert (error.status, error.details) == (426, "low_version")


def test_merge_slashes_can_be_turned_off() -> None:
    data = b"GET //a//b/../c HTTP/1.1\r\nHost: a\r\n\r\n"
    (merged, _) = request_events(data)
    (kept, _) = request_events(data, Limits(merge_slashes=False))
    assert isinstance(merged, RequestHead) and isinstance(kept, RequestHead)
    assert (merged.path, kept.path) == ("/a/c", "//a//c")
