"""Transcript helpers: bytes in (whole, or cut into pieces), events out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from isthmus.proto.http1 import (
    DEFAULT_LIMITS,
    Body,
    EndOfMessage,
    Limits,
    ProtocolError,
    RequestEvent,
    RequestHead,
    RequestParser,
    ResponseEvent,
    ResponseHead,
    ResponseParser,
)

Event = RequestEvent | ResponseEvent


def merged(events: Iterable[Event]) -> list[Event]:
    """Consecutive ``Body`` events joined, so transcripts do not depend on how bytes arrived."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def request_events(
    pieces: Sequence[bytes | memoryview] | bytes, limits: Limits = DEFAULT_LIMITS
) -> list[Event]:
    parser = RequestParser(limits)
    if isinstance(pieces, bytes):
        pieces = [pieces]
    events: list[Event] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    return merged(events)


def request_error(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ProtocolError:
    """The error ``data`` causes, fed whole; fails the test if it is accepted."""
    parser = RequestParser(limits)
    try:
        events = parser.feed(data)
    except ProtocolError as exc:
        return exc
    raise AssertionError(f"accepted: {events}")


def response_events(
    method: str, pieces: Sequence[bytes] | bytes, eof: bool = False
) -> tuple[list[Event], ResponseParser]:
    parser = ResponseParser(method)
    if isinstance(pieces, bytes):
        pieces = [pieces]
    events: list[Event] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    if eof:
        events.extend(parser.feed_eof())
    return merged(events), parser


def heads(events: Iterable[Event]) -> list[RequestHead | ResponseHead]:
    return [e for e in events if isinstance(e, RequestHead | ResponseHead)]


def shape(events: Iterable[Event]) -> list[object]:
    """A compact transcript: ``("GET", "/p")`` per request head, status per response head,
    body bytes, ``"end"``, and ``("upgrade", rest)``."""
    out: list[object] = []
    for event in events:
        if isinstance(event, RequestHead):
            out.append((event.method, event.target))
        elif isinstance(event, ResponseHead):
            out.append(event.status)
        elif isinstance(event, Body):
            out.append(event.data)
        elif type(event) is EndOfMessage:
            out.append("end")
        else:
            out.append(("upgrade", getattr(event, "rest", None)))
    return out
