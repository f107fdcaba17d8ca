"""The downstream side: requests from clients, checked the way Envoy checks them at the edge."""

from __future__ import annotations

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserInvalidURLError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from isthmus.proto.http1_events import (
    DEFAULT_LIMITS,
    END_OF_MESSAGE,
    HEAD_SLACK,
    NAMES,
    Body,
    Headers,
    Limits,
    ProtocolError,
    RequestEvent,
    RequestHead,
    Upgrade,
    name_key,
)
from isthmus.proto.http1_path import normalize_path, odd_path_char
from isthmus.proto.http1_target import (
    VALID_HOSTS,
    check_host,
    check_version,
    codec_error,
    split_target,
)

_new_head = tuple.__new__
#: Headers whose values the parser reads; every other one is only recorded.
_SPECIAL = frozenset(("host", "content-length", "transfer-encoding", "upgrade", "expect"))
_METHODS = {
    name.encode(): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")
}

# connection states
_OPEN, _CONTINUING, _CLOSED, _UPGRADED, _FAILED = range(5)
#: What a closed parser holds instead of its llhttp (never fed: a closed parser ignores data).
_CLOSED_PARSER = HttpRequestParser(object())


class _Stop(Exception):
    """Raised from a callback to make llhttp stop without it being an error."""


class RequestParser:
    """Bytes from a client in, events out: ``RequestHead``, ``Body``\\ *, ``EndOfMessage``.

    A request that switches protocols (a WebSocket upgrade, or CONNECT) ends with ``Upgrade``
    instead of ``EndOfMessage`` and the parser stops. So does a request that did not ask to
    keep the connection alive: bytes after it are ignored, since the server will close. After a
    ``ProtocolError`` every ``feed`` raises it again.

    CONNECT is reported (method ``"CONNECT"``, ``path`` ``""``, then ``Upgrade``) rather than
    refused here: at an Istio gateway Envoy has no ``connect_matcher`` route, so it answers 404
    (``NR``), and it answers 403 (``upgrade_failed``) to an upgrade it is not configured for.
    """

    # Per-connection and per-request state starts as these class attributes: a connection
    # costs a few stores, not twenty (the parser is made per accepted connection).
    _state = _OPEN
    _error: ProtocolError | None = None
    _feed_len = 0
    _started = False  # a message began during the current feed
    _resume: bytes | None = None  # after an ignored h2c upgrade: how to go on
    _url = b""
    _underscore = False
    _in_head = False
    _in_body = False
    _keep_alive = True
    _head_hi = 0  # upper bound of head bytes received before this feed
    _head_lo = 0  # lower bound of head bytes received so far
    _body_idle = 0  # body-state bytes that produced nothing (chunk framing, trailers)

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._max_bytes = limits.max_request_headers_bytes
        self._events: list[RequestEvent] = []
        self._headers: Headers = []
        self._specials: Headers = []
        # it is its own httptools protocol: the on_* methods are llhttp's callbacks, not API
        self._parser = HttpRequestParser(self)

    # --- API ---------------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> list[RequestEvent]:
        """Parse what arrived; return the events it completes, in order."""
        if self._state != _OPEN or not data:  # llhttp reports an empty body span for b""
            return self._not_open()
        events: list[RequestEvent] = []
        self._events = events
        self._feed_len = len(data)
        self._started = False
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._stopped(data, exc)
        if self._in_head:
            self._check_partial_head(len(data))
        elif self._in_body:
            if events:
                self._body_idle = 0
            else:
                self._body_idle += len(data)
                if self._body_idle > self._max_bytes + HEAD_SLACK:
                    self._fail(
                        431, "chunk framing or trailers too large", "http1.headers_too_large"
                    )
        return events

    @property
    def in_head(self) -> bool:
        """Part of a request head has arrived, not all of it."""
        return self._in_head

    def close(self) -> None:
        """The connection is gone.  llhttp and this parser refer to each other (it calls
        this object's ``on_*`` methods), so without this only the garbage collector could
        free them: a cycle per connection, a collection every few dozen connections."""
        self._state = _CLOSED
        self._events = []
        self._parser = _CLOSED_PARSER

    def feed_eof(self) -> list[RequestEvent]:
        """The client closed its side. Raises if that cut a request short."""
        if self._state == _OPEN and (self._in_head or self._in_body):
            self._fail(400, "connection closed in the middle of a request", "http1.codec_error")
        return []

    def _not_open(self) -> list[RequestEvent]:
        if self._state == _OPEN:
            return []
        if self._state == _FAILED and self._error is not None:
            raise self._error
        if self._state == _UPGRADED:
            raise RuntimeError("feed() after Upgrade: those bytes belong to the tunnel")
        return []  # after a request without keep-alive: the server is closing

    # --- when llhttp stops ---------------------------------------------------------------------
    def _stopped(
        self, data: bytes | bytearray | memoryview, exc: HttpParserError | HttpParserUpgrade
    ) -> None:
        while True:
            if isinstance(exc, HttpParserUpgrade):
                rest = data[exc.args[0] :]
                resume = self._resume
                if resume is None:
                    self._state = _UPGRADED
                    self._events.append(Upgrade(bytes(rest)))
                    return
                # An h2c upgrade is ignored: the connection stays HTTP/1.1 on a fresh parser.
                # llhttp skipped the body, so a synthetic head replays its framing first.
                self._resume = None
                self._parser = HttpRequestParser(self)
                if resume:
                    self._state = _CONTINUING
                    self._parser.feed_data(resume)
                data = rest
            elif isinstance(exc, HttpParserCallbackError):
                self._callback_failed(exc)
                return
            elif self._state == _CLOSED:
                return  # llhttp refuses data after "Connection: close"; so do we, quietly
            else:
                status, details = codec_error(exc, isinstance(exc, HttpParserInvalidURLError))
                self._fail(status, str(exc), details)
            try:
                self._parser.feed_data(data)
                return
            except (HttpParserError, HttpParserUpgrade) as again:
                exc = again

    def _callback_failed(self, exc: HttpParserCallbackError) -> None:
        cause = exc.__context__
        if isinstance(cause, _Stop):
            return
        if isinstance(cause, ProtocolError):
            self._raise(cause)
        raise exc

    def _fail(self, status: int, reason: str, details: str) -> None:
        self._raise(ProtocolError(status, reason, details))

    def _raise(self, error: ProtocolError) -> None:
        self._state = _FAILED
        self._error = error
        error.events = list(self._events)
        raise error

    def _check_partial_head(self, fed: int) -> None:
        if self._started:  # bytes before the head are not ours to count: count what we know
            self._head_hi = fed
            self._head_lo = len(self._url) + sum(len(n) + len(v) for n, v in self._headers)
        else:  # the whole feed belongs to the unfinished head
            self._head_hi += fed
            self._head_lo += fed
        if self._head_lo > self._max_bytes + HEAD_SLACK:
            self._fail(431, "request headers too large", "http1.headers_too_large")

    # --- httptools callbacks: record, and build the head once it is complete ----------------
    def on_message_begin(self) -> None:
        if self._state != _OPEN:
            if self._state == _CONTINUING:
                return
            raise _Stop
        self._url = b""
        if self._headers:  # trailers of the previous message landed there
            self._headers = []
            self._specials = []
        self._underscore = False
        self._in_head = True
        self._started = True
        self._head_hi = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = NAMES.get(name)
        if key is None:
            key = name_key(name)
            if "_" in key:
                self._underscore = True
        header = (key, value.decode("latin-1"))
        self._headers.append(header)
        if key in _SPECIAL:
            self._specials.append(header)

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(body))

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._parser.should_upgrade() and self._resume != b"":
            return  # Upgrade ends this message, or the body of an ignored upgrade follows
        self._events.append(END_OF_MESSAGE)
        if not self._keep_alive:
            self._state = _CLOSED

    def on_headers_complete(self) -> None:
        if not self._in_head:  # the synthetic head replaying an ignored upgrade's framing
            self._state = _OPEN
            self._in_body = True
            return
        self._in_head = False
        limits = self._limits
        headers = self._headers
        if len(headers) > limits.max_request_headers_count:
            raise ProtocolError(431, "too many request headers", "http1.too_many_headers")
        if self._head_hi + self._feed_len > self._max_bytes and (
            len(self._url) + sum(len(n) + len(v) for n, v in headers) > self._max_bytes
        ):
            raise ProtocolError(431, "request headers too large", "http1.headers_too_large")
        if self._underscore and limits.reject_underscore_headers:
            raise ProtocolError(
                400, "header name contains an underscore", "http1.unexpected_underscore"
            )
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        version = parser.get_http_version()

        host: str | None = None
        content_length: int | None = None
        chunked = False
        upgrade: str | None = None
        expect_continue = False
        for name, value in self._specials:
            if name == "host":
                if host is not None:
                    raise ProtocolError(400, "more than one Host header", "http.invalid_authority")
                host = value.rstrip(" \t")
            elif name == "content-length":
                content_length = int(value)  # llhttp checked the digits and refused duplicates
            elif name == "transfer-encoding":
                if chunked or value.rstrip(" \t").lower() != "chunked":
                    raise ProtocolError(
                        400, "unsupported transfer encoding", "http1.invalid_transfer_encoding"
                    )
                chunked = True
            elif name == "upgrade":
                upgrade = value.strip(" \t").lower()
            else:  # HTTP/1.0 has no 100-continue: a server must ignore it (RFC 9110 10.1.1)
                expect_continue = version == "1.1" and value.strip(" \t").lower() == "100-continue"

        if version != "1.1":
            check_version(version, chunked, limits.accept_http_10)
        elif host is None:
            raise ProtocolError(400, "HTTP/1.1 request without Host", "missing_host_header")
        if host is not None and host not in VALID_HOSTS:
            check_host(host)
        if chunked and content_length is not None:  # llhttp refuses this too
            raise ProtocolError(
                400, "both Content-Length and chunked", "http1.content_length_not_allowed"
            )

        target = self._url.decode("latin-1")
        if target[:1] == "/" and "#" not in target:
            path, _, query = target.partition("?")
            if odd_path_char(path) is not None or "//" in path or "/." in path:
                normalized = normalize_path(path, limits.merge_slashes)
                if normalized is None:
                    raise ProtocolError(400, "invalid path", "path_normalization_failed")
                path = normalized
        else:
            path, query, host = split_target(method, target, host, limits.merge_slashes)

        if parser.should_upgrade():
            upgrade = self._upgrade(method, upgrade, content_length, chunked)
        else:
            upgrade = None
        keep_alive = parser.should_keep_alive()
        self._keep_alive = keep_alive
        self._in_body = True
        self._body_idle = 0
        self._headers = []  # the head owns the list now; trailers must not reach it
        self._specials = []
        self._events.append(
            _new_head(
                RequestHead,
                (
                    method,
                    target,
                    path,
                    query,
                    version,
                    headers,
                    host,
                    keep_alive,
                    content_length,
                    chunked,
                    upgrade,
                    expect_continue,
                ),
            )
        )

    def _upgrade(
        self, method: str, upgrade: str | None, content_length: int | None, chunked: bool
    ) -> str | None:
        """The upgrade the request asks for; arranges to ignore h2c as Envoy does."""
        if upgrade == "h2c" and method != "CONNECT":
            if chunked:
                self._resume = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            elif content_length:
                self._resume = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % content_length
            else:
                self._resume = b""
            return None
        if chunked or content_length:
            raise ProtocolError(
                400, f"{method} upgrade request with a body", "http1.body_disallowed"
            )
        return None if method == "CONNECT" else upgrade
