"""Heads and chunks as bytes, each built with one join and one encode.

Header lines come from ``"\\r\\n".join(map(": ".join, headers))``: no Python-level loop per
header. Because that text is built in one piece, one count of CR and one of LF find any CR or
LF smuggled into a name or value (a response-splitting bug elsewhere) for a fraction of a µs.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

LAST_CHUNK = b"0\r\n\r\n"

# RFC 9110 / Envoy wording where Python's table still has the RFC 2616 phrase
_PHRASES = {413: "Payload Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable"}


def _phrase(code: int) -> str:
    if code in _PHRASES:
        return _PHRASES[code]
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"  # Envoy's CodeUtility::toString for codes it does not know


#: ``HTTP/1.1 <code> <phrase>\r\n`` for every valid status, computed once.
STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, _phrase(code).encode("latin-1"))
    for code in range(100, 600)
}

_join_field = ": ".join


def _fields(headers: Sequence[tuple[str, str]]) -> str:
    text = "\r\n".join(map(_join_field, headers))
    breaks = len(headers) - 1 if headers else 0
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise ValueError("CR or LF in a header name or value")
    return text


def serialize_request_head(method: str, target: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """``METHOD target HTTP/1.1``, the headers as given, and the blank line."""
    if " " in target or "\r" in target or "\n" in target:
        raise ValueError(f"invalid request target {target!r}")
    if not headers:
        return f"{method} {target} HTTP/1.1\r\n\r\n".encode("latin-1")
    return f"{method} {target} HTTP/1.1\r\n{_fields(headers)}\r\n\r\n".encode("latin-1")


def serialize_response_head(
    status: int, reason: str | None, headers: Sequence[tuple[str, str]]
) -> bytes:
    """The status line (from ``STATUS_LINES`` unless a ``reason`` is given) and the headers."""
    if reason is None:
        line = STATUS_LINES.get(status)
        if line is None:
            raise ValueError(f"invalid status {status}")
    elif 100 <= status <= 599 and "\r" not in reason and "\n" not in reason:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))
    else:
        raise ValueError(f"invalid status line {status} {reason!r}")
    if not headers:
        return line + b"\r\n"
    return line + f"{_fields(headers)}\r\n\r\n".encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; ``b""`` for no data (an empty chunk would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)
