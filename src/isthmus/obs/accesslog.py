"""Envoy's access log as Istio configures it, written off the event loop.

The text format is Istio's default (``EnvoyTextLogFormat`` in istio/istio
``pilot/pkg/model/telemetry_logging.go``)::

    [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
    %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
    %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
    %REQUESTED_SERVER_NAME% %ROUTE_NAME%

on one line, ``-`` for an empty field; the JSON format uses ``EnvoyJSONLogFormatIstio``'s keys,
``null`` for an empty field and numbers for codes, byte counts and the duration.  TCP
connections are logged when they close, in the same formats (``"- - -" 0``).

The request path only appends an entry to a bounded queue (about 0.1 µs, plus building the
entry); a background thread formats and writes in batches.  When the reader of the log falls
behind and the queue is full, entries are dropped and counted (:attr:`AccessLog.dropped`),
never buffered without bound and never waited for.
"""

from __future__ import annotations

import collections
import json
import os
import select
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TextIO

Format = Literal["text", "json"]
PIPE_BUF = 4096
BATCH_BYTES = 1 << 20


@dataclass(slots=True)
class HttpEntry:
    """One HTTP request, as the data plane saw it; ``None`` means "not known" (``-``).

    ``start_time`` is Unix seconds (``time.time()`` when the request began), ``duration_ms``
    runs to the last byte of the response, byte counts are bodies as Envoy counts them
    (``%BYTES_RECEIVED%``/``%BYTES_SENT%``), addresses are ``ip:port``.
    """

    start_time: float
    method: str
    path: str
    protocol: str
    response_code: int
    response_flags: str
    bytes_received: int
    bytes_sent: int
    duration_ms: float
    authority: str | None
    downstream_local_address: str
    downstream_remote_address: str
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    upstream_local_address: str | None = None
    upstream_service_time: str | None = None
    route_name: str | None = None
    x_forwarded_for: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    requested_server_name: str | None = None
    response_code_details: str | None = None
    connection_termination_details: str | None = None
    upstream_transport_failure_reason: str | None = None


@dataclass(slots=True)
class TcpEntry:
    """One TCP connection, logged when it closed: bytes received from and sent to the
    downstream client, and why it ended (``response_flags``: ``-``, ``UF``, ``NR``...)."""

    start_time: float
    duration_ms: float
    bytes_received: int
    bytes_sent: int
    response_flags: str
    downstream_local_address: str
    downstream_remote_address: str
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    upstream_local_address: str | None = None
    requested_server_name: str | None = None
    route_name: str | None = None
    connection_termination_details: str | None = None
    upstream_transport_failure_reason: str | None = None


Entry = HttpEntry | TcpEntry

HttpFields = tuple[
    float, str, str, str, int, str, int, int, float, str | None, str, str,
    str | None, str | None, str | None, str | None, str | None, str | None, str | None,
    str | None, str | None, str | None, str | None, str | None,
]  # fmt: skip
"""An :class:`HttpEntry`'s fields in order, as a plain tuple: what the data plane queues
(a tuple of strings and numbers costs a tenth of an entry to build, and the garbage
collector stops tracking it, however many wait in the queue)."""


def http_fields(entry: HttpEntry) -> HttpFields:
    return (
        entry.start_time, entry.method, entry.path, entry.protocol, entry.response_code,
        entry.response_flags, entry.bytes_received, entry.bytes_sent, entry.duration_ms,
        entry.authority, entry.downstream_local_address, entry.downstream_remote_address,
        entry.upstream_host, entry.upstream_cluster, entry.upstream_local_address,
        entry.upstream_service_time, entry.route_name, entry.x_forwarded_for,
        entry.user_agent, entry.request_id, entry.requested_server_name,
        entry.response_code_details, entry.connection_termination_details,
        entry.upstream_transport_failure_reason,
    )  # fmt: skip


class _Clock:
    """``%START_TIME%`` (``2024-01-01T00:00:00.000Z``), formatting each second once."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, when: float) -> str:
        second, millis = divmod(round(when * 1000), 1000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._prefix + _MILLIS[millis]


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


def _d(value: str | None) -> str:
    return value if value else "-"


def format_text(entry: Entry, clock: _Clock) -> str:
    """One line of Istio's default text format, newline included."""
    if isinstance(entry, HttpEntry):
        return text_line(http_fields(entry), clock)
    start = clock.format(entry.start_time)
    return (
        f'[{start}] "- - -" 0 {_d(entry.response_flags)} - '
        f"{_d(entry.connection_termination_details)} "
        f'"{_d(entry.upstream_transport_failure_reason)}" '
        f"{entry.bytes_received} {entry.bytes_sent} {int(entry.duration_ms)} - "
        f'"-" "-" "-" "-" "{_d(entry.upstream_host)}" {_d(entry.upstream_cluster)} '
        f"{_d(entry.upstream_local_address)} {entry.downstream_local_address} "
        f"{entry.downstream_remote_address} {_d(entry.requested_server_name)} "
        f"{_d(entry.route_name)}\n"
    )


def text_line(f: HttpFields, clock: _Clock) -> str:
    """:func:`format_text` of an HTTP request's fields."""
    (start, method, path, protocol, code, flags, received, sent, duration, authority, local,
     remote, upstream, cluster, upstream_local, service_time, route, xff, agent, request_id,
     sni, details, termination, failure) = f  # fmt: skip
    # %-formatting: a third less CPU than the same line as an f-string (1.5 vs 2.4 µs here);
    # %d truncates the duration as int() does
    return _TEXT_LINE % (
        clock.format(start), method, path, protocol, code, flags or "-", details or "-",
        termination or "-", failure or "-", received, sent, duration, service_time or "-",
        xff or "-", agent or "-", request_id or "-", authority or "-", upstream or "-",
        cluster or "-", upstream_local or "-", local, remote, sni or "-", route or "-",
    )  # fmt: skip


_TEXT_LINE = (
    '[%s] "%s %s %s" %d %s %s %s "%s" %d %d %d %s "%s" "%s" "%s" "%s" "%s" %s %s %s %s %s %s\n'
)


_quote: Callable[[str], str] = json.encoder.encode_basestring


def _j(value: str | None) -> str:
    """A JSON string, or ``null`` for an empty field (as Envoy's JSON formatter does)."""
    return _quote(value) if value else "null"


def format_json(entry: Entry, clock: _Clock) -> str:
    """One line of Istio's JSON format (``EnvoyJSONLogFormatIstio`` keys), newline included."""
    return _json(entry, clock)


def json_line(f: HttpFields, clock: _Clock) -> str:
    """:func:`format_json` of an HTTP request's fields."""
    return _json(HttpEntry(*f), clock)


def _json(entry: Entry, clock: _Clock) -> str:
    if isinstance(entry, HttpEntry):
        request = (
            f'"method":{_j(entry.method)},"path":{_j(entry.path)},'
            f'"protocol":{_j(entry.protocol)},"response_code":{entry.response_code},'
        )
        details = _j(entry.response_code_details)
        headers = (
            f'"upstream_service_time":{_j(entry.upstream_service_time)},'
            f'"x_forwarded_for":{_j(entry.x_forwarded_for)},'
            f'"user_agent":{_j(entry.user_agent)},"request_id":{_j(entry.request_id)},'
            f'"authority":{_j(entry.authority)},'
        )
    else:
        request = '"method":null,"path":null,"protocol":null,"response_code":0,'
        details = "null"
        headers = (
            '"upstream_service_time":null,"x_forwarded_for":null,"user_agent":null,'
            '"request_id":null,"authority":null,'
        )
    return (
        f'{{"start_time":"{clock.format(entry.start_time)}",{request}'
        f'"response_flags":{_j(entry.response_flags or "-")},'
        f'"response_code_details":{details},'
        f'"connection_termination_details":{_j(entry.connection_termination_details)},'
        f'"upstream_transport_failure_reason":{_j(entry.upstream_transport_failure_reason)},'
        f'"bytes_received":{entry.bytes_received},"bytes_sent":{entry.bytes_sent},'
        f'"duration":{int(entry.duration_ms)},{headers}'
        f'"upstream_host":{_j(entry.upstream_host)},'
        f'"upstream_cluster":{_j(entry.upstream_cluster)},'
        f'"upstream_local_address":{_j(entry.upstream_local_address)},'
        f'"downstream_local_address":{_j(entry.downstream_local_address)},'
        f'"downstream_remote_address":{_j(entry.downstream_remote_address)},'
        f'"requested_server_name":{_j(entry.requested_server_name)},'
        f'"route_name":{_j(entry.route_name)}}}\n'
    )


class AccessLog:
    """A bounded queue of entries and the thread that formats and writes them.

    ``stream`` with a file descriptor (stdout, a file, a pipe) is written with ``os.write``
    in whole lines: a regular file, or any stream this process alone writes (``exclusive``),
    takes a whole batch per write; a shared pipe gets at most ``PIPE_BUF`` bytes per write,
    so lines from several worker processes never interleave.  This thread holds the GIL
    while it formats a batch, and the event loop waits for it: ``batch`` (64 lines, about
    0.1 ms of formatting) bounds that wait, which shows in the tail latency of a gateway
    serving one connection at a time (against batches of 1024: p99 lower in 5 of 6
    interleaved runs here, by 7% on average; no measurable cost at 50 connections); the
    write that ends each batch hands the GIL back.
    Other streams get ``write`` + ``flush``.  ``--access-log off`` means no ``AccessLog`` at
    all: the data plane then builds no entries.
    """

    def __init__(
        self,
        fmt: Format = "text",
        stream: TextIO | None = None,
        *,
        max_pending: int = 65536,
        flush_interval: float = 0.1,
        batch: int = 64,
        exclusive: bool = False,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"access log format must be text or json, not {fmt!r}")
        self.format = fmt
        self.stream = stream if stream is not None else sys.stdout
        self.max_pending = max_pending
        self.flush_interval = flush_interval
        self.batch = batch
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self._queue: collections.deque[Entry | HttpFields] = collections.deque()
        self._formatter = format_json if fmt == "json" else format_text
        self._line = json_line if fmt == "json" else text_line
        self._clock = _Clock()
        self._fd = _fileno(self.stream)
        self._chunk_limit = BATCH_BYTES if exclusive else _chunk_limit(self._fd)
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="isthmus-access-log", daemon=True)
        self._thread.start()

    # --- the request path ----------------------------------------------------------------------

    def http(self, entry: HttpEntry) -> None:
        """Queue one request's entry; never blocks (drops and counts when full)."""
        queue = self._queue
        if len(queue) >= self.max_pending:
            self.dropped += 1
            return
        queue.append(entry)

    def http_fields(self, fields: HttpFields) -> None:
        """:meth:`http` for the data plane: the entry's fields as a tuple."""
        queue = self._queue
        if len(queue) >= self.max_pending:
            self.dropped += 1
            return
        queue.append(fields)

    def tcp(self, entry: TcpEntry) -> None:
        """Queue one closed connection's entry; never blocks (drops and counts when full)."""
        queue = self._queue
        if len(queue) >= self.max_pending:
            self.dropped += 1
            return
        queue.append(entry)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- control (not for the event loop: these wait) ------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued entry is written; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._queue or self._busy:
                self._wake.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is queued (waiting at most ``timeout``) and stop the writer thread."""
        flushed = self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=0.5 if flushed else 0.0)
        return flushed and not self._thread.is_alive()

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while queue and not self._stopping:
                self._busy = True
                lines = []
                clock, line, formatter = self._clock, self._line, self._formatter
                for _ in range(min(self.batch, len(queue))):
                    item = queue.popleft()
                    if isinstance(item, tuple):
                        lines.append(line(item, clock))
                    else:
                        lines.append(formatter(item, clock))
                try:
                    self._write(lines)
                    self.written += len(lines)
                except (OSError, ValueError):
                    self.errors += 1
            self._busy = False
            with self._idle:
                self._idle.notify_all()

    def _write(self, lines: list[str]) -> None:
        if self._fd is None:
            self.stream.write("".join(lines))
            self.stream.flush()
            return
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            data = line.encode("utf-8", "replace")
            if chunk and size + len(data) > self._chunk_limit:
                _write_all(self._fd, b"".join(chunk))
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        if chunk:
            _write_all(self._fd, b"".join(chunk))


def _fileno(stream: TextIO) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    stream.flush()
    return fd


def _chunk_limit(fd: int | None) -> int:
    """Bytes per ``write``: ``PIPE_BUF`` into a pipe (or socket), where a bigger write from
    one worker could interleave with another's; a regular file takes whole batches (each
    write(2) to a file is placed whole)."""
    if fd is None:
        return PIPE_BUF
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return PIPE_BUF
    return BATCH_BYTES if regular else PIPE_BUF


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[written:]
