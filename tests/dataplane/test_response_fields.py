"""The response header block as the client gets it: cut from the upstream's bytes."""

from __future__ import annotations

from isthmus.dataplane.http_headers import (
    RESPONSE_DROP,
    RESPONSE_DROP_LENGTH,
    connection_tokens,
    encode_fields,
    response_fields,
)
from isthmus.proto.http1 import connection_options

RAW = (
    b"\r\nServer: nginx\r\nContent-Length: 5\r\nCONNECTION: keep-alive, X-Secret"
    b"\r\nX-Secret: 1\r\nX-Secret-Not: kept\r\nServer-Timing: db;dur=5\r\nTe: trailers"
)


def test_hop_by_hop_server_and_connection_named_fields_go_the_rest_stays_as_sent() -> None:
    out = response_fields(RAW, RESPONSE_DROP, "keep-alive, x-secret")
    assert out == b"\r\nContent-Length: 5\r\nX-Secret-Not: kept\r\nServer-Timing: db;dur=5"


def test_length_goes_only_when_asked_and_plain_connection_values_name_nothing() -> None:
    raw = b"\r\nContent-Length: 0\r\nConnection: close\r\nX-A: 1"
    assert response_fields(raw, RESPONSE_DROP_LENGTH, "close") == b"\r\nX-A: 1"
    assert response_fields(raw, RESPONSE_DROP, "close") == b"\r\nContent-Length: 0\r\nX-A: 1"
    assert response_fields(b"", RESPONSE_DROP) == b""


def test_route_removals_match_any_case() -> None:
    drop = RESPONSE_DROP | {"x-internal"}
    assert response_fields(b"\r\nX-Internal: a\r\nx-INTERNAL: b\r\nY: c", drop) == b"\r\nY: c"


def test_encoded_fields_keep_message_bytes_and_send_configured_text_as_utf8() -> None:
    assert encode_fields([("x-a", "caf\xe9")]) == b"\r\nx-a: caf\xe9"  # latin-1 from a message
    assert encode_fields([("x-a", "東京")]) == "\r\nx-a: 東京".encode()


def test_connection_options_are_read_alike_on_both_sides() -> None:
    """One reading of ``Connection`` (``proto.http1.connection_options``) for requests,
    responses and keep-alive: spaces and tabs around tokens, any case, empty elements."""
    value = " X-One ,\tX-Two\t,, close"
    assert connection_options(value) == {"x-one", "x-two", "close"}
    request = [("connection", value), ("x-one", "1"), ("x-two", "2"), ("x-three", "3")]
    assert connection_tokens(request) == {"x-one", "x-two", "close"}
    raw = b"\r\nX-One: 1\r\nX-Two: 2\r\nX-Three: 3"
    assert response_fields(raw, RESPONSE_DROP, value.lower()) == b"\r\nX-Three: 3"
