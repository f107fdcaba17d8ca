"""The downstream side of the HTTP connection manager: one asyncio Protocol per client.

Parser events are dispatched to one request task at a time; pipelined requests wait (reading
paused) and are answered in order.  The connection enforces Envoy's edge timeouts: request
headers within ``request_headers_timeout``, and ``idle_timeout`` between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from isthmus.dataplane import local_reply as lr
from isthmus.dataplane.deadlines import DeadlineQueue
from isthmus.dataplane.http_exchange import NO_BODY, RequestBody
from isthmus.dataplane.http_forward import Forward
from isthmus.dataplane.http_request import Outcome, handle_request, route_table_of
from isthmus.dataplane.http_request import request_id as new_request_id
from isthmus.dataplane.http_upstream import HttpPool, UpstreamHttp
from isthmus.dataplane.relay import relay_transports
from isthmus.dataplane.telemetry import Telemetry
from isthmus.proto.http1 import (
    END_OF_MESSAGE,
    Body,
    EndOfMessage,
    Limits,
    ProtocolError,
    RequestHead,
    RequestParser,
    Upgrade,
)
from isthmus.snapshot.types import HttpConnectionManager, Route, Snapshot

log = logging.getLogger("isthmus.http")


class SnapshotSource(Protocol):
    @property
    def snapshot(self) -> Snapshot: ...


@dataclass(frozen=True)
class HttpSettings:
    """Envoy's edge defaults (ISTIO-NOTES "Edge defaults"), each configurable."""

    limits: Limits = field(default_factory=Limits)
    request_headers_timeout: float = 10.0
    stream_idle_timeout: float = 300.0
    idle_timeout: float = 3600.0
    trusted_hops: int = 0
    tracing: float | None = None
    """``--tracing PERCENT``: start/continue B3 traces; None: headers pass unchanged."""


@dataclass(frozen=True)
class MeshMode:
    """The connection is the local explicit proxy: mesh routes, CONNECT tunnels, and
    ``outboundTrafficPolicy`` (``allow_any`` = ALLOW_ANY, else REGISTRY_ONLY)."""

    allow_any: bool = False


@dataclass
class HttpContext:
    """What every connection of one gateway shares."""

    gateway: SnapshotSource
    pool: HttpPool
    settings: HttpSettings = field(default_factory=HttpSettings)
    rng: random.Random = field(default_factory=random.Random)
    draining: bool = False
    connections: set[DownstreamHttp] = field(default_factory=set)
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)
    draining_listeners: set[str] = field(default_factory=set)
    telemetry: Telemetry = field(default_factory=Telemetry)
    loop: asyncio.AbstractEventLoop | None = None
    """The loop serving these connections (looked up by the first one)."""
    first_heads: DeadlineQueue[DownstreamHttp] = field(
        default_factory=lambda: DeadlineQueue(_head_overdue)
    )
    """Connections waiting for their first request head (Envoy's request headers timeout):
    one timer for all of them instead of one per accepted connection."""
    responses: DeadlineQueue[DownstreamHttp] = field(
        default_factory=lambda: DeadlineQueue(_response_overdue)
    )
    """Connections whose request waits for a response head under the stream idle timeout
    and that have no timer of their own yet (their first request: a connection arms its own
    timer when it first goes idle between requests)."""
    route_tables: dict[tuple[str, str], HttpConnectionManager | None] = field(default_factory=dict)
    """Route tables by (listener, filter chain) of ``route_snapshot``, shared by connections."""
    route_snapshot: Snapshot | None = None


def _head_overdue(conn: DownstreamHttp) -> None:
    if conn.waiting == _HEAD and not conn.busy and not conn.closed:
        conn.waiting = _NOTHING
        conn.close()


def _response_overdue(conn: DownstreamHttp) -> None:
    if conn.waiting == _RESPONSE and conn.timer is None and not conn.closed:
        conn.waiting = _NOTHING
        if conn.forward is not None:
            conn.forward.on_timeout()


# what the connection's one timer is waiting for
_NOTHING, _HEAD, _IDLE, _RESPONSE = range(4)
_NEVER = float("inf")


class DownstreamHttp(asyncio.Protocol):
    """One client connection: requests in order, one at a time, each answered from callbacks.

    A request's head is routed at once (:func:`handle_request`); a forward then runs on the
    upstream connection's callbacks and calls :meth:`finish`.  Only slow cases run a Task
    (:meth:`run`): CONNECT tunnels and fault delays; opening upstream connections and
    streaming request bodies are the forward's own Tasks.
    """

    # Per-connection and per-request state starts as these class attributes: accepting a
    # connection costs a dozen stores instead of forty.
    transport: asyncio.Transport = cast(asyncio.Transport, None)
    loop: asyncio.AbstractEventLoop = cast(asyncio.AbstractEventLoop, None)
    peer_ip = ""
    busy = False
    """A request is in flight (from its head until :meth:`finish`)."""
    forward: Forward | None = None
    task: asyncio.Task[Outcome | None] | None = None
    body: RequestBody = NO_BODY
    dispatching = False
    upstream: UpstreamHttp | None = None
    upgrade_rest = b""
    closed = False
    reading_paused = False
    # the one timer: armed for ``timer_at``, re-armed lazily when ``deadline`` moves later
    timer: asyncio.TimerHandle | None = None
    timer_at = _NEVER
    deadline = _NEVER
    waiting = _NOTHING
    last_status = 0
    last_flag = ""
    last_route: Route | None = None
    pending_error: ProtocolError | None = None
    peer_address = ""
    _local_address: str | None = None
    hcm_snapshot: Snapshot | None = None
    hcm: HttpConnectionManager | None = None
    """The route table of ``hcm_snapshot`` (read once per snapshot)."""
    # the request in flight, for metrics and the access log
    head: RequestHead | None = None
    started_at = 0.0
    started_wall = 0.0
    bytes_sent = 0
    last_cluster = ""
    last_upstream = ""
    request_id = ""
    """The ``x-request-id`` generated for the request in flight when it was forwarded."""

    def __init__(
        self,
        ctx: HttpContext,
        listener: str,
        chain: str,
        scheme: str,
        gateway_port: int,
        mesh: MeshMode | None = None,
        local_address: str | None = None,
    ) -> None:
        """``local_address``: the listener's, when it is bound to one address (then every
        connection's local address is known without asking the socket)."""
        if local_address is not None:
            self._local_address = local_address
        self.mesh = mesh
        self.ctx = ctx
        self.gateway = ctx.gateway
        self.pool = ctx.pool
        self.writes = ctx.pool.writes
        self.settings = ctx.settings
        self.rng = ctx.rng
        self.telemetry = ctx.telemetry
        self.listener = listener
        self.chain = chain
        self.scheme = scheme
        self.gateway_port = gateway_port
        self.parser = RequestParser(ctx.settings.limits)
        self.backlog: deque[object] = deque()
        self.tasks: set[asyncio.Task[object]] = set()

    @property
    def draining(self) -> bool:
        """Answer with ``connection: close``: the gateway or this listener is going away."""
        return self.ctx.draining or self.listener in self.ctx.draining_listeners

    def route_table(self, snapshot: Snapshot) -> HttpConnectionManager | None:
        if snapshot is self.hcm_snapshot:
            return self.hcm
        if self.mesh is not None:
            hcm = HttpConnectionManager(snapshot.mesh.route_config) if snapshot.mesh else None
        else:
            ctx = self.ctx
            if ctx.route_snapshot is not snapshot:
                ctx.route_snapshot = snapshot
                ctx.route_tables.clear()
            key = (self.listener, self.chain)
            if key in ctx.route_tables:
                hcm = ctx.route_tables[key]
            else:
                hcm = ctx.route_tables[key] = route_table_of(snapshot, self.listener, self.chain)
        self.hcm_snapshot, self.hcm = snapshot, hcm
        return hcm

    # connection lifecycle ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        ctx = self.ctx
        loop = ctx.loop
        if loop is None:  # once per gateway: on Python 3.11 each call costs a getpid(2)
            loop = ctx.loop = asyncio.get_running_loop()
        self.loop = loop
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = peer[0]
            # formatted once per connection for the access log, not once per request
            self.peer_address = f"{peer[0]}:{peer[1]}"
        ctx.connections.add(self)
        ctx.all_closed.clear()
        # until the first head, the context's shared timer watches the headers timeout
        self.waiting = _HEAD
        ctx.first_heads.add(self, loop.time() + self.settings.request_headers_timeout, loop)

    @property
    def local_address(self) -> str:
        """``address:port`` this connection was accepted on (for the access log: asked once,
        and only when a log line is written)."""
        local = self._local_address
        if local is None:
            sockname = self.transport.get_extra_info("sockname") if self.transport else None
            local = self._local_address = format_address(sockname)
        return local

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser.close()
        ctx = self.ctx
        ctx.connections.discard(self)
        ctx.first_heads.discard(self)
        ctx.responses.discard(self)
        if not ctx.connections:
            ctx.all_closed.set()
        self.waiting = _NOTHING
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.forward is not None:
            self.forward.abort()
        if self.task is not None:
            self.task.cancel()
        self.body.fail()
        for task in list(self.tasks):
            task.cancel()

    # the timer --------------------------------------------------------------------------------
    def _wait(self, what: int, deadline: float) -> None:
        """Wait for ``what`` until ``deadline`` (``time.monotonic()``)."""
        self.waiting = what
        self.deadline = deadline
        if deadline < self.timer_at:
            self._arm(deadline - time.monotonic())

    def _arm(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        # the loop is kept: on Python 3.11 get_running_loop() costs a getpid(2) per call
        self.timer = self.loop.call_later(max(0.0, delay), self._timeout)
        self.timer_at = time.monotonic() + delay

    def _timeout(self) -> None:
        self.timer = None
        self.timer_at = _NEVER
        what = self.waiting
        if what == _NOTHING or self.closed:
            return
        left = self.deadline - time.monotonic()
        if left > 0.001:  # the deadline moved on since the timer was armed
            self._arm(left)
            return
        self.waiting = _NOTHING
        if what == _RESPONSE:
            if self.forward is not None:
                self.forward.on_timeout()
        elif not self.busy:
            self.close()

    def await_response(self, deadline: float, stream_idle: bool = False) -> None:
        """A forward sent its request: its response head is due by ``deadline``.
        ``stream_idle``: the deadline is the stream idle timeout from now, which the
        context's shared timer watches for a connection with no timer of its own."""
        if stream_idle and self.timer is None:
            self.waiting = _RESPONSE
            self.deadline = deadline
            loop = self.loop
            self.ctx.responses.add(self, loop.time() + self.settings.stream_idle_timeout, loop)
            return
        self._wait(_RESPONSE, deadline)

    def response_started(self) -> None:
        self.waiting = _NOTHING
        self.ctx.responses.discard(self)

    # helpers for the request in flight ----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed:
            self.bytes_sent += len(data)
            self.writes.write(self.transport, data)

    def close(self) -> None:
        """Close after what is written, the gateway's write batch included."""
        self.writes.flush()
        self.transport.close()

    def abort(self) -> None:
        self.writes.flush()
        self.transport.abort()

    def note_upstream(self, cluster: str, upstream: str) -> None:
        self.last_cluster = cluster
        self.last_upstream = upstream

    def note_response(self, status: int, flag: str) -> None:
        self.last_status = status
        self.last_flag = flag

    def note_route(self, route: Route) -> None:
        self.last_route = route

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def run(self, coro: Coroutine[Any, Any, Outcome | None]) -> None:
        """The request continues in a Task; its Outcome (if any) finishes it."""
        task = self.loop.create_task(coro)
        self.task = task
        task.add_done_callback(self._ran)

    def _ran(self, task: asyncio.Task[Outcome | None]) -> None:
        if self.task is task:
            self.task = None
        if self.closed or task.cancelled():
            if not self.closed:
                self.abort()
            return
        exc = task.exception()
        if exc is not None:
            self.failed(exc)
            return
        outcome = task.result()
        if outcome is not None:
            self.finish(outcome.keep_alive, outcome.upgraded)

    def failed(self, exc: BaseException) -> None:
        """A bug on the request path: the request cannot be answered properly."""
        log.error("request failed", exc_info=exc)
        if not self.closed:
            self.abort()

    # reading ----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            if not self.busy:
                self._reject(exc)
            else:
                self.pending_error = exc
                if not self.body.done:
                    self.body.fail()
                self.pause_reading()
            return
        self.dispatching = True
        try:
            for event in events:
                if self.backlog:
                    self.backlog.append(event)
                else:
                    self._dispatch(event)
        finally:
            self.dispatching = False
        if not self.busy and self.waiting != _HEAD and self.parser.in_head:
            # part of a head: the rest must follow within ``request_headers_timeout``
            self._wait(_HEAD, time.monotonic() + self.settings.request_headers_timeout)

    def _dispatch(self, event: object) -> None:
        if self.busy:
            if event is END_OF_MESSAGE and self.body.done:
                return  # the end of the request in flight
            body = self.body
            if not body.done:
                if isinstance(event, Body):
                    body.feed(event.data)
                    return
                if isinstance(event, EndOfMessage):
                    if isinstance(event, Upgrade):
                        self._upgrade_requested(event)
                    body.end()
                    return
            if isinstance(event, EndOfMessage):
                if isinstance(event, Upgrade):
                    self._upgrade_requested(event)
                return  # the end of the request in flight
            self.backlog.append(event)  # pipelined: answered in order
            self.pause_reading()
            return
        if type(event) is RequestHead:
            self._start(event)
        elif isinstance(event, Upgrade):
            self._upgrade_requested(event)

    def _drain(self) -> None:
        """Requests that arrived while the previous one was in flight, in order."""
        backlog = self.backlog
        self.dispatching = True
        try:
            while backlog and not self.closed:
                if self.busy and isinstance(backlog[0], RequestHead):
                    return
                self._dispatch(backlog.popleft())
        finally:
            self.dispatching = False
        if not backlog:
            self.resume_reading()

    def _upgrade_requested(self, event: Upgrade) -> None:
        """What follows an upgrade request is not HTTP: hold it until the upstream answers."""
        self.upgrade_rest += event.rest
        self.pause_reading()

    def _start(self, head: RequestHead) -> None:
        self.busy = True
        self.waiting = _NOTHING
        self.ctx.first_heads.discard(self)
        self.head = head
        self.started_at = time.monotonic()
        if self.telemetry.log is not None:
            self.started_wall = time.time()
        self.bytes_sent = 0
        self.last_cluster = self.last_upstream = ""
        self.last_status, self.last_flag, self.last_route = 0, "", None
        self.request_id = ""
        if head.chunked or head.content_length:
            self.body = RequestBody(self.pause_reading, self.resume_reading, True)
        try:
            outcome = handle_request(self, head, self.body)
        except Exception as exc:
            self.failed(exc)
            return
        if outcome is not None:
            self.finish(outcome.keep_alive, outcome.upgraded)

    def finish(self, keep_alive: bool, upgraded: bool = False) -> None:
        """The request in flight is over: record it, then read the next one (or close)."""
        if not self.busy:
            return
        self._record()
        self.busy = False
        self.forward = None
        self.body = NO_BODY
        if self.closed or upgraded:
            return
        if self.pending_error is not None:
            self._reject(self.pending_error)
            return
        if not keep_alive:
            self.close()
            return
        self._wait(_IDLE, time.monotonic() + self.settings.idle_timeout)
        if not self.dispatching and (self.backlog or self.reading_paused):
            self._drain()

    def _record(self) -> None:
        """Metrics and the access log for the request that just ended."""
        telemetry = self.telemetry
        head = self.head
        if head is None or (telemetry.metrics is None and telemetry.log is None):
            return
        duration_ms = (time.monotonic() - self.started_at) * 1000.0
        received = self.body.total if self.body is not None else 0
        flags = self.last_flag or "-"
        status = self.last_status
        if telemetry.metrics is not None:
            telemetry.metrics.http(
                self.last_cluster,
                self.last_upstream,
                status,
                flags,
                duration_ms,
                received,
                self.bytes_sent,
            )
        if telemetry.log is not None:
            xff = agent = None
            for name, value in head.headers:  # the two the log shows, without a dict
                if name == "x-forwarded-for":
                    xff = value
                elif name == "user-agent":
                    agent = value
            # the id sent upstream; a request answered here had one too (Envoy generates it
            # for every request), which nothing but this line shows
            rid = self.request_id or new_request_id(self.rng.getrandbits(128))
            route = self.last_route
            telemetry.log.http_fields(
                (
                    self.started_wall,
                    head.method,
                    head.target,
                    "HTTP/1.1" if head.version == "1.1" else f"HTTP/{head.version}",
                    status,
                    flags,
                    received,
                    self.bytes_sent,
                    duration_ms,
                    head.host,
                    self.local_address,
                    self.peer_address,
                    self.last_upstream or None,
                    self.last_cluster or None,
                    None,  # upstream local address
                    None,  # upstream service time
                    route.name if route is not None else None,
                    xff,
                    agent,
                    rid,
                    None,  # requested server name
                    None,  # response code details
                    None,  # connection termination details
                    None,  # upstream transport failure reason
                )
            )
        self.head = None

    def _reject(self, exc: ProtocolError) -> None:
        reply = lr.bad_request(exc.status, exc.details)
        self.note_response(reply.status, reply.flag)
        self.write(lr.render_reply(reply, keep_alive=False))
        self.close()

    # flow control -----------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # upgrades ---------------------------------------------------------------------------------
    def upgrade(self, upstream: UpstreamHttp, to_client: bytes) -> None:
        """After a 101: the two connections become a byte relay (websocket and friends)."""
        assert upstream.transport is not None
        self.waiting = _NOTHING
        self.reading_paused = False  # the relay resumes both transports under its protocol
        self.writes.flush()  # the relay writes to both transports itself
        self.spawn(
            relay_transports(
                self.transport,
                upstream.transport,
                to_upstream=self.upgrade_rest,
                to_client=to_client,
            )
        )


def format_address(sockname: tuple[Any, ...] | None) -> str:
    """``address:port`` of a socket name, as the access log shows it (``""``: unknown)."""
    return f"{sockname[0]}:{sockname[1]}" if sockname else ""


def listener_address(sock: socket.socket) -> str | None:
    """The local address every connection accepted on ``sock`` has, or None when ``sock``
    is bound to a wildcard address (each connection's then depends on its interface)."""
    try:
        sockname = sock.getsockname()
    except OSError:
        return None
    if not isinstance(sockname, tuple) or sockname[0] in ("0.0.0.0", "::"):
        return None
    return format_address(sockname)


def close_idle(ctx: HttpContext, listeners: set[str] | None = None) -> None:
    """On drain (of the gateway, or of ``listeners``): connections between requests close
    now; busy ones after their response."""
    if listeners is None:
        ctx.draining = True
    for conn in list(ctx.connections):
        if listeners is not None and conn.listener not in listeners:
            continue
        if not conn.busy:
            with contextlib.suppress(Exception):
                conn.close()
