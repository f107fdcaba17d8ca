"""The upstream side: one response (after any interim ones) to the request just sent."""

from __future__ import annotations

import re

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from isthmus.proto.http1_events import (
    DEFAULT_LIMITS,
    END_OF_MESSAGE,
    HEAD_SLACK,
    Body,
    Limits,
    ProtocolError,
    ResponseEvent,
    ResponseHead,
    Upgrade,
    connection_options,
)

_new_head = tuple.__new__
_NO_BODY = frozenset((204, 304))
_VERSIONS = {b"HTTP/1.1 ": "1.1", b"HTTP/1.0 ": "1.0"}
_CLOSED_PARSER = HttpResponseParser(object())
#: The fields the parser reads, found in the head's bytes in one pass (llhttp checked the
#: syntax: CRLF line ends, no space before the colon, no folded lines).
_SPECIALS = re.compile(rb"\r\n(content-length|transfer-encoding|connection):[ \t]*([^\r]*)", re.I)


class _Stop(Exception):
    """Raised from a callback when bytes follow the complete response."""


class ResponseParser:
    """Bytes from an upstream in, events out: ``ResponseHead``\\ (s), ``Body``\\ *, the end.

    Made per request, with the request's method: only the method tells whether a response
    to HEAD has a body. Interim 1xx heads come first (no end event of their own); a 101 ends
    with ``Upgrade``, anything else with ``EndOfMessage``. A body that runs until the
    connection closes ends when ``feed_eof`` is called.

    Errors carry 502 (the upstream broke the protocol) or 503 (it closed too early) and
    Envoy's ``upstream_reset_{before,after}_response_started{...}`` details. Bytes after the
    complete response are dropped and make ``reusable`` false: such a connection must not
    carry another request.

    Being on every request's path, it is its own httptools protocol (the ``on_*`` methods are
    llhttp's callbacks, not API) and keeps its initial state in class attributes, so making
    one costs three attribute stores and llhttp's allocation.  A keep-alive connection keeps
    one and calls :meth:`reset` per request: the parser and llhttp reference each other, so
    one per request would leave a reference cycle per request for the garbage collector.

    llhttp is given no per-header callback (each costs a Python call and two ``bytes``): it
    validates the head, and ``on_headers_complete`` cuts the head out of the bytes received,
    which are kept from the start of the response until its final head.
    """

    # per response; class-level defaults keep construction cheap
    _events: list[ResponseEvent]
    _buffer: bytearray  # HEAD only: the head is cut out before llhttp sees it
    _heads = b""  # the response's bytes from its start, until the final head is complete
    _head_at = 0  # where the next head starts in ``_heads``
    _error: ProtocolError | None = None
    _final = False  # the final (non-1xx) head was produced
    _done = False
    _upgraded = False
    _extra = False
    _keep_alive = False
    _until_eof = False
    _in_head = False
    _interim = False
    _head_bytes = 0  # head bytes received in earlier feeds

    def __init__(self, method: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._head_only = method == "HEAD"
        self._parser = HttpResponseParser(self)

    def reset(self, method: str) -> None:
        """Ready for the response to the next request sent on the same connection.  llhttp
        goes on from where the last response ended when that one was complete and reusable
        (a response to HEAD never is: llhttp was only shown its head)."""
        fresh = not self.reusable or self._head_only
        state = self.__dict__
        limits, parser = self._limits, self._parser
        state.clear()  # back to the class-level initial values
        self._limits = limits
        self._head_only = method == "HEAD"
        self._parser = HttpResponseParser(self) if fresh else parser

    def close(self) -> None:
        """The connection is gone: break the reference cycle with llhttp (see
        ``RequestParser.close``).  A closed parser must not be fed or reset."""
        self._done = True
        self._parser = _CLOSED_PARSER

    @property
    def done(self) -> bool:
        """The response is complete."""
        return self._done

    @property
    def reusable(self) -> bool:
        """The connection may carry another request: complete, kept alive, nothing extra."""
        return self._done and self._keep_alive and not self._extra and not self._upgraded

    def feed(self, data: bytes | bytearray | memoryview) -> list[ResponseEvent]:
        """Parse what arrived; return the events it completes, in order."""
        if self._done or self._error is not None or not data:
            return self._not_open(data)
        events: list[ResponseEvent] = []
        self._events = events
        if self._head_only:
            self._feed_head_only(data)
            return events
        if not self._final:  # the head(s) are cut from these bytes when llhttp has checked them
            self._heads = self._heads + data if self._heads else bytes(data)
        began = self._in_head
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._stopped(data, exc)
        if self._in_head:
            self._head_bytes = self._head_bytes + len(data) if began else len(data)
            if self._head_bytes > self._limits.max_response_headers_bytes + HEAD_SLACK:
                self._fail(502, "response headers too large", "protocol_error")
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        """The upstream closed its side: ends a read-until-close body, or raises."""
        if self._error is not None:
            raise self._error
        if self._done:
            return []
        if self._until_eof:
            self._done = True
            return [END_OF_MESSAGE]
        self._events = []
        self._fail(
            503, "upstream closed before the response was complete", "connection_termination"
        )
        return []  # not reached

    def _not_open(self, data: bytes | bytearray | memoryview) -> list[ResponseEvent]:
        if self._error is not None:
            raise self._error
        if self._upgraded:
            raise RuntimeError("feed() after Upgrade: those bytes belong to the tunnel")
        if data:
            self._extra = True
        return []

    # --- driving httptools -------------------------------------------------------------------
    def _feed_head_only(self, data: bytes | bytearray | memoryview) -> None:
        if not hasattr(self, "_buffer"):
            self._buffer = bytearray()
        buffer = self._buffer
        buffer += data
        while not self._done:
            end = buffer.find(b"\r\n\r\n")  # llhttp only accepts CRLF line ends in responses
            if end < 0:
                if len(buffer) > self._limits.max_response_headers_bytes + HEAD_SLACK:
                    self._fail(502, "response headers too large", "protocol_error")
                return
            head = bytes(buffer[: end + 4])
            del buffer[: end + 4]
            self._heads, self._head_at = head, 0
            self._run(head)
        if buffer:
            self._extra = True
            buffer.clear()

    def _run(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._stopped(data, exc)

    def _stopped(
        self, data: bytes | bytearray | memoryview, exc: HttpParserError | HttpParserUpgrade
    ) -> None:
        """llhttp stopped before the end of ``data``: an upgrade, one of our callbacks, or an
        error."""
        if isinstance(exc, HttpParserUpgrade):
            self._done = self._upgraded = True
            self._events.append(Upgrade(bytes(data[exc.args[0] :])))
        elif isinstance(exc, HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, _Stop):
                self._extra = True
            elif isinstance(cause, ProtocolError):
                self._raise(cause)
            else:
                raise exc
        elif self._done:  # llhttp refuses data after "Connection: close"
            self._extra = True
        else:
            self._fail(502, str(exc), "protocol_error")

    def _fail(self, status: int, reason: str, cause: str) -> None:
        self._raise(ProtocolError(status, reason, cause))

    def _raise(self, error: ProtocolError) -> None:
        stage = "after" if self._final else "before"
        error.details = f"upstream_reset_{stage}_response_started{{{error.details}}}"
        error.events = list(self._events)
        self._error = error
        raise error

    # --- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._done:
            raise _Stop
        self._in_head = True
        self._head_bytes = 0

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif not self._done and not self._parser.should_upgrade():  # Upgrade will end it
            self._done = True
            self._events.append(END_OF_MESSAGE)

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        limits = self._limits
        heads, start = self._heads, self._head_at
        end = heads.find(b"\r\n\r\n", start)
        line_end = heads.find(b"\r\n", start)
        if end < 0 or line_end < 0:  # llhttp accepts CRLF line ends only: cannot happen
            raise ProtocolError(502, "response head not found", "protocol_error")
        self._head_at = end + 4
        raw = heads[line_end:end] if end > line_end else b""
        if raw.count(b"\r\n") > limits.max_response_headers_count:
            raise ProtocolError(502, "too many response headers", "protocol_error")
        if len(raw) > limits.max_response_headers_bytes:
            raise ProtocolError(502, "response headers too large", "protocol_error")
        status = parser.get_status_code()
        # "HTTP/1.1 ": read from the bytes (httptools formats a new string per call)
        version = _VERSIONS.get(heads[start : start + 9])
        if version is None:
            version = parser.get_http_version()
            raise ProtocolError(502, f"unsupported HTTP version {version}", "protocol_error")
        if not 100 <= status <= 599:
            raise ProtocolError(502, f"invalid status {status}", "protocol_error")
        content_length: int | None = None
        chunked = False
        connection = ""
        for name, value in _SPECIALS.findall(raw) if raw else ():
            kind = name[0] | 0x20
            if kind == 0x63 and len(name) == 14:  # content-length
                content_length = int(value)  # llhttp checked the digits, refused duplicates
            elif kind == 0x74:  # transfer-encoding
                if chunked or value.rstrip(b" \t").lower() != b"chunked":
                    raise ProtocolError(502, "unsupported transfer encoding", "protocol_error")
                chunked = True
            else:
                text = value.rstrip(b" \t").decode("latin-1").lower()
                connection = f"{connection},{text}" if connection else text
        keep_alive = parser.should_keep_alive()
        interim = status < 200 and status != 101
        if interim or status == 204:
            content_length = None
        if status == 101 and not parser.should_upgrade():
            raise ProtocolError(502, "101 response without Upgrade", "protocol_error")
        if self._head_only and not interim:
            if status == 101:
                raise ProtocolError(502, "101 response to HEAD", "protocol_error")
            keep_alive = _keeps_alive(version, connection)
        # the status line is "HTTP/1.1 200 OK": llhttp allows one space each side of the code
        reason = heads[start + 13 : line_end].decode("latin-1")
        self._events.append(
            _new_head(
                ResponseHead,
                (status, reason, version, raw, keep_alive, content_length, chunked, connection),
            )
        )
        if interim:
            self._interim = True
            return
        self._final = True
        self._heads = b""
        self._keep_alive = keep_alive
        if self._head_only:
            self._done = True
            self._events.append(END_OF_MESSAGE)
        else:
            self._until_eof = not chunked and content_length is None and status not in _NO_BODY


def _keeps_alive(version: str, connection: str) -> bool:
    tokens = connection_options(connection)
    return "keep-alive" in tokens if version == "1.0" else "close" not in tokens
