"""``--tracing``: B3 headers started or continued at the gateway; untouched without it."""

from __future__ import annotations

from isthmus.dataplane.http_headers import add_trace

BITS = (0xABC << 64) | 0x1234


def test_new_trace_when_none_came_in() -> None:
    headers = [("host", "x")]
    add_trace(headers, 100.0, BITS)
    got = dict(headers)
    assert got["x-b3-traceid"] == f"{0xABC:032x}"
    assert got["x-b3-spanid"] == f"{0x1234:016x}"
    assert got["x-b3-sampled"] == "1"


def test_zero_percent_starts_unsampled_traces() -> None:
    headers: list[tuple[str, str]] = []
    add_trace(headers, 0.0, BITS)
    assert dict(headers)["x-b3-sampled"] == "0"


def test_incoming_b3_continues_with_a_child_span() -> None:
    headers = [
        ("x-b3-traceid", "5079ad3a4af418915795fab599dca0b8"),
        ("x-b3-spanid", "5795fab599dca0b8"),
        ("x-b3-sampled", "1"),
    ]
    add_trace(headers, 100.0, BITS)
    got = dict(headers)
    assert got["x-b3-traceid"] == "5079ad3a4af418915795fab599dca0b8"
    assert got["x-b3-parentspanid"] == "5795fab599dca0b8"
    assert got["x-b3-spanid"] == f"{0x1234:016x}"
    assert got["x-b3-sampled"] == "1"


def test_w3c_traceparent_is_kept_and_joined() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [("traceparent", parent)]
    add_trace(headers, 100.0, BITS)
    got = dict(headers)
    assert got["traceparent"] == parent
    assert got["x-b3-traceid"] == "0af7651916cd43dd8448eb211c80319c"
    assert got["x-b3-parentspanid"] == "b7ad6b7169203331"
