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
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from isthmus.dataplane import local_reply as lr
from isthmus.dataplane.http_exchange import RequestBody
from isthmus.dataplane.http_request import Outcome, handle_request, route_table_of
from isthmus.dataplane.http_upstream import HttpPool, UpstreamHttp
from isthmus.dataplane.relay import relay_transports
from isthmus.dataplane.telemetry import Telemetry
from isthmus.obs.accesslog import HttpEntry
from isthmus.proto.http1 import (
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


class DownstreamHttp(asyncio.Protocol):
    def __init__(
        self,
        ctx: HttpContext,
        listener: str,
        chain: str,
        scheme: str,
        gateway_port: int,
        mesh: MeshMode | None = None,
    ) -> None:
        self.mesh = mesh
        self.ctx = ctx
        self.gateway = ctx.gateway
        self.pool = ctx.pool
        self.settings = ctx.settings
        self.rng = ctx.rng
        self.listener = listener
        self.chain = chain
        self.scheme = scheme
        self.gateway_port = gateway_port
        self.parser = RequestParser(ctx.settings.limits)
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.loop: asyncio.AbstractEventLoop = cast(asyncio.AbstractEventLoop, None)
        self.peer_ip = ""
        self.current: asyncio.Task[Outcome] | None = None
        self.body: RequestBody | None = None
        self.backlog: deque[object] = deque()
        self.upstream: UpstreamHttp | None = None
        self.upgrade_rest = b""
        self.closed = False
        self.reading_paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.awaiting_head = False
        self.tasks: set[asyncio.Task[object]] = set()
        self.last_status = 0
        self.last_flag = ""
        self.last_route: Route | None = None
        self.pending_error: ProtocolError | None = None
        self.peer_address = self.local_address = ""
        # the request in flight, for metrics and the access log
        self.head: RequestHead | None = None
        self.started_at = 0.0
        self.started_wall = 0.0
        self.bytes_sent = 0
        self.last_cluster = ""
        self.last_upstream = ""

    @property
    def draining(self) -> bool:
        """Answer with ``connection: close``: the gateway or this listener is going away."""
        return self.ctx.draining or self.listener in self.ctx.draining_listeners

    def route_table(self, snapshot: Snapshot) -> HttpConnectionManager | None:
        if self.mesh is not None:
            return HttpConnectionManager(snapshot.mesh.route_config) if snapshot.mesh else None
        return route_table_of(snapshot, self.listener, self.chain)

    # connection lifecycle ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        local = transport.get_extra_info("sockname")
        # formatted once per connection for the access log, not once per request
        self.peer_address = f"{peer[0]}:{peer[1]}" if peer else ""
        self.local_address = f"{local[0]}:{local[1]}" if local else ""
        self.ctx.connections.add(self)
        self.ctx.all_closed.clear()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        if not self.ctx.connections:
            self.ctx.all_closed.set()
        self._disarm()
        if self.current is not None:
            self.current.cancel()
        if self.body is not None:
            self.body.fail()
        for task in list(self.tasks):
            task.cancel()

    def _idle(self) -> None:
        """Between requests: Envoy's connection ``idle_timeout`` (1 h by default)."""
        self.awaiting_head = False
        self._arm(self.settings.idle_timeout)

    def _await_head(self) -> None:
        """A request has begun (or the connection is new): its headers must be complete
        within ``request_headers_timeout`` (10 s)."""
        self.awaiting_head = True
        self._arm(self.settings.request_headers_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        # the loop is kept: on Python 3.11 get_running_loop() costs a getpid(2) per call
        self.timer = self.loop.call_later(seconds, self._timeout)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timeout(self) -> None:
        self.timer = None
        if self.current is None and not self.closed:
            self.transport.close()

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.bytes_sent += len(data)
            self.transport.write(data)

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

    # reading ----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.current is None and not self.awaiting_head:
            self._await_head()
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            if self.current is None:
                self._reject(exc)
            else:
                self.pending_error = exc
                if self.body is not None and not self.body.done:
                    self.body.fail()
                self.pause_reading()
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: object) -> None:
        body = self.body
        if self.current is not None and body is not None and not body.done:
            if isinstance(event, Body):
                body.feed(event.data)
                return
            if isinstance(event, EndOfMessage):
                body.end()
                return
            if isinstance(event, Upgrade):
                self._upgrade_requested(event)
                body.end()
                return
        if self.current is not None:
            if isinstance(event, Upgrade):
                self._upgrade_requested(event)
                return
            self.backlog.append(event)
            self.pause_reading()
            return
        if isinstance(event, RequestHead):
            self._start(event)
        elif isinstance(event, Upgrade):
            self._upgrade_requested(event)

    def _upgrade_requested(self, event: Upgrade) -> None:
        """What follows an upgrade request is not HTTP: hold it until the upstream answers."""
        self.upgrade_rest += event.rest
        self.pause_reading()

    def _start(self, head: RequestHead) -> None:
        self._disarm()
        self.head = head
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self.bytes_sent = 0
        self.last_cluster = self.last_upstream = ""
        self.last_status, self.last_flag, self.last_route = 0, "", None
        self.awaiting_head = False
        expects_body = head.chunked or bool(head.content_length)
        self.body = RequestBody(self.pause_reading, self.resume_reading, expects_body)
        self.current = self.loop.create_task(handle_request(self, head, self.body))
        self.current.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Outcome]) -> None:
        self._record()
        self.current = None
        self.body = None
        if self.closed:
            return
        if task.cancelled():
            self.transport.abort()
            return
        exc = task.exception()
        if exc is not None:
            log.error("request failed", exc_info=exc)
            self.transport.abort()
            return
        outcome = task.result()
        if outcome.upgraded:
            return
        if self.pending_error is not None:
            self._reject(self.pending_error)
            return
        if not outcome.keep_alive:
            self.transport.close()
            return
        self._idle()
        while self.backlog and self.current is None:
            self._dispatch(self.backlog.popleft())
        if not self.backlog:
            self.resume_reading()

    def _record(self) -> None:
        """Metrics and the access log for the request that just ended."""
        telemetry = self.ctx.telemetry
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
            xff = agent = request_id = None
            for name, value in head.headers:  # the three the log shows, without a dict
                if name == "x-forwarded-for":
                    xff = value
                elif name == "user-agent":
                    agent = value
                elif name == "x-request-id":
                    request_id = value
            telemetry.log.http(
                HttpEntry(
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
                    upstream_host=self.last_upstream or None,
                    upstream_cluster=self.last_cluster or None,
                    route_name=self.last_route.name if self.last_route is not None else None,
                    x_forwarded_for=xff,
                    user_agent=agent,
                    request_id=request_id,
                )
            )
        self.head = None

    def _reject(self, exc: ProtocolError) -> None:
        reply = lr.bad_request(exc.status, exc.details)
        self.note_response(reply.status, reply.flag)
        self.write(lr.render_reply(reply, keep_alive=False))
        self.transport.close()

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
    async def upgrade(self, upstream: UpstreamHttp, to_client: bytes) -> None:
        """After a 101: the two connections become a byte relay (websocket and friends)."""
        assert upstream.transport is not None
        self._disarm()
        self.reading_paused = False  # the relay resumes both transports under its protocol
        self.spawn(
            relay_transports(
                self.transport,
                upstream.transport,
                to_upstream=self.upgrade_rest,
                to_client=to_client,
            )
        )


def close_idle(ctx: HttpContext, listeners: set[str] | None = None) -> None:
    """On drain (of the gateway, or of ``listeners``): connections between requests close
    now; busy ones after their response."""
    if listeners is None:
        ctx.draining = True
    for conn in list(ctx.connections):
        if listeners is not None and conn.listener not in listeners:
            continue
        if conn.current is None:
            with contextlib.suppress(Exception):
                conn.transport.close()
