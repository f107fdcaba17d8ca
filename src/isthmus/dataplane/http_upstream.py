"""Upstream HTTP/1.1 connections and the per-endpoint keep-alive pool.

Envoy's model: the balancer picks an endpoint, then that endpoint's pool hands out an idle
connection or opens one.  A connection serves one exchange at a time (HTTP/1.1 without
pipelining upstream, as Envoy does) and goes back to the pool when both messages completed
cleanly, up to ``maxRequestsPerConnection``; idle ones close after ``connectionPool.http.
idleTimeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Collection, Sequence
from typing import Protocol, cast

from isthmus.dataplane.balancer import ClusterState, ClusterStates, EndpointState
from isthmus.dataplane.tls_cache import ContextCache
from isthmus.dataplane.tls_context import check_peer
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.upstream import (
    ConnectFailure,
    NoHealthyUpstream,
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamOverflow,
    connect_or_reuse,
)
from isthmus.dataplane.write_batch import WriteBatch
from isthmus.proto.http1 import (
    Body,
    ProtocolError,
    ResponseHead,
    ResponseParser,
    Upgrade,
)
from isthmus.snapshot.types import Cluster


class Exchange(Protocol):
    """Receives what one upstream connection produces for the request it carries."""

    def on_response_head(self, head: ResponseHead) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_end(self, rest: bytes) -> None: ...
    def on_upstream_lost(self, exc: BaseException | None) -> None: ...
    def on_upstream_writable(self, writable: bool) -> None: ...
    def on_read_done(self) -> None:
        """What one read produced has been delivered (a chance to write it out at once)."""


class UpstreamHttp(asyncio.Protocol):
    """One connection to one endpoint."""

    def __init__(
        self,
        cluster: str,
        endpoint: EndpointState,
        state: ClusterState,
        writes: WriteBatch | None = None,
    ) -> None:
        self.cluster = cluster
        self.writes = writes if writes is not None else WriteBatch()
        self.endpoint = endpoint
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.parser: ResponseParser | None = None
        self.requests = 0
        self.closed = False
        self.idle_since = 0.0
        self.received_any = False

    # lifecycle --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.state.connection_closed(self.endpoint)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.on_upstream_lost(exc)
        if self.parser is not None:  # after the exchange has read what it needs of it
            self.parser.close()

    def start(self, exchange: Exchange, method: str) -> None:
        self.exchange = exchange
        if self.parser is None:
            self.parser = ResponseParser(method)
        else:
            self.parser.reset(method)
        self.requests += 1
        self.received_any = False

    def write(self, data: bytes) -> None:
        self.writes.write(self.transport, data)  # type: ignore[arg-type]  # connected by now

    def close(self) -> None:
        if self.transport is not None:
            self.writes.flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.writes.flush()
            self.transport.abort()

    # reading ----------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        exchange, parser = self.exchange, self.parser
        if exchange is None or parser is None:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        self.received_any = True
        try:
            events = parser.feed(data)
        except ProtocolError as exc:
            self.exchange = None
            self.abort()
            exchange.on_upstream_lost(exc)
            return
        self._dispatch(exchange, events)

    def eof_received(self) -> bool:
        exchange, parser = self.exchange, self.parser
        if exchange is not None and parser is not None:
            try:
                self._dispatch(exchange, parser.feed_eof())
            except ProtocolError as exc:
                self.exchange = None
                exchange.on_upstream_lost(exc)
        return False

    def _dispatch(self, exchange: Exchange, events: Sequence[object]) -> None:
        for event in events:
            kind = type(event)
            if kind is Body:
                exchange.on_response_body(event.data)  # type: ignore[attr-defined]
            elif kind is ResponseHead:
                exchange.on_response_head(event)  # type: ignore[arg-type]
            else:  # the end: EndOfMessage, or Upgrade after a 101
                self.exchange = None
                rest = b""
                if isinstance(event, Upgrade):  # what follows belongs to a relay
                    self.pause_reading()
                    rest = event.rest
                exchange.on_response_end(rest)
                return
            if self.exchange is not exchange:
                return
        exchange.on_read_done()

    # flow control -----------------------------------------------------------------------------
    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_writable(False)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_writable(True)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class HttpPool:
    """Idle upstream connections by cluster and endpoint."""

    def __init__(self, states: ClusterStates, tls: ContextCache | None = None) -> None:
        self.states = states
        self.tls = tls or ContextCache()
        self._idle: dict[tuple[str, str], list[UpstreamHttp]] = {}
        self._pending: dict[str, int] = {}
        self._freed: dict[str, asyncio.Event] = {}
        self.writes = WriteBatch()
        """Every write of this gateway's HTTP connections, upstream and downstream."""

    def _take_idle(self, cluster: Cluster, endpoint: EndpointState) -> UpstreamHttp | None:
        conns = self._idle.get((cluster.name, endpoint.key))
        idle_timeout = cluster.connection_pool.http_idle_timeout
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if not conn.closed and (now - conn.idle_since) < idle_timeout:
                return conn
            conn.close()
        return None

    def take(
        self, cluster: Cluster, source_ip: str | None, exclude: Collection[str]
    ) -> UpstreamHttp | EndpointState:
        """Without waiting: an idle connection to the endpoint the balancer picks (counted as
        acquired), or that endpoint when it has none (pass it to :meth:`acquire` as
        ``first``).  Raises :class:`NoHealthyUpstream`."""
        state = self.states.get(cluster)
        chosen = state.choose(source_ip=source_ip, exclude=exclude)
        if chosen is None:
            raise NoHealthyUpstream(cluster.name)
        pooled = self._take_idle(cluster, chosen)
        if pooled is None:
            return chosen
        state.acquire(chosen)
        return pooled

    async def acquire(
        self,
        cluster: Cluster,
        source_ip: str | None,
        exclude: Collection[str],
        hash_key: str | None = None,
        first: EndpointState | None = None,
    ) -> tuple[UpstreamHttp, bool]:
        """A connection to an endpoint the balancer picks (``first``: already picked), and
        whether it was reused.

        At ``maxConnections`` the request waits for a connection to come back, as one of at
        most ``http1MaxPendingRequests`` pending requests (Envoy's circuit breakers); past
        that it fails with :class:`UpstreamOverflow` (503 UO).  Raises the :mod:`upstream`
        errors (NoHealthyUpstream, UpstreamConnectError, ...)."""
        deadline = time.monotonic() + cluster.connection_pool.connect_timeout
        while True:
            try:
                return await self._acquire(cluster, source_ip, exclude, hash_key, first)
            except UpstreamOverflow:
                first = None
                limit = cluster.connection_pool.http1_max_pending_requests
                pending = self._pending.get(cluster.name, 0)
                left = deadline - time.monotonic()
                if (limit is not None and pending >= limit) or left <= 0:
                    raise
                freed = self._freed.setdefault(cluster.name, asyncio.Event())
                freed.clear()
                self._pending[cluster.name] = pending + 1
                try:
                    # A released connection wakes us; one closed a moment later is seen on
                    # the next try, so wake up at least every 50 ms.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(freed.wait(), min(left, 0.05))
                finally:
                    self._pending[cluster.name] -= 1

    async def _acquire(
        self,
        cluster: Cluster,
        source_ip: str | None,
        exclude: Collection[str],
        hash_key: str | None,
        first: EndpointState | None = None,
    ) -> tuple[UpstreamHttp, bool]:
        result = await connect_or_reuse(
            cluster,
            self.states,
            source_ip,
            hash_key=hash_key,
            max_attempts=1,
            final=False,
            exclude=exclude,
            reuse=lambda ep: self._take_idle(cluster, ep),
            first=first,
        )
        if isinstance(result, tuple):
            return result[0], True
        return await self._wrap(cluster, result), False

    async def _wrap(self, cluster: Cluster, conn: UpstreamConnection) -> UpstreamHttp:
        """Adopt the socket; with DestinationRule ``tls`` SIMPLE/MUTUAL, originate TLS."""
        loop = asyncio.get_running_loop()
        state = conn.cluster_state
        context: ssl.SSLContext | None = None
        sni: str | None = None
        try:
            if cluster.tls is not None:
                secret = dict(cluster.tls.secret) if cluster.tls.secret else None
                context, sni = self.tls.get_client(
                    cluster.tls, host=cluster.service, alpn=("http/1.1",), secret=secret
                )
            transport, protocol = await loop.create_connection(
                lambda: UpstreamHttp(cluster.name, conn.endpoint_state, state, self.writes),
                sock=conn.sock,
                ssl=context,
                server_hostname=(sni or None) if context is not None else None,
                ssl_handshake_timeout=(
                    cluster.connection_pool.connect_timeout if context is not None else None
                ),
            )
        except (TLSConfigError, ssl.SSLError, OSError, TimeoutError) as exc:
            conn.close()
            if context is None and not isinstance(exc, TLSConfigError):
                raise
            failure = ConnectFailure(conn.endpoint_state.key, "TLS error", None, str(exc))
            raise UpstreamConnectError(cluster.name, (failure,)) from exc
        except BaseException:
            conn.close()
            raise
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and not check_peer(ssl_object):
            transport.abort()
            failure = ConnectFailure(
                conn.endpoint_state.key,
                "TLS error",
                None,
                "server certificate matches none of the subjectAltNames",
            )
            raise UpstreamConnectError(cluster.name, (failure,))
        return protocol

    def release(self, cluster: Cluster, conn: UpstreamHttp, reusable: bool) -> None:
        """The exchange is over: give the connection back, or close it."""
        conn.state.release(conn.endpoint)
        conn.exchange = None
        if self._freed:  # requests waiting at maxConnections
            freed = self._freed.get(cluster.name)
            if freed is not None:
                freed.set()
        limit = cluster.connection_pool.max_requests_per_connection
        if not reusable or conn.closed or (limit is not None and conn.requests >= limit):
            conn.close()
            return
        conn.idle_since = time.monotonic()
        key = (cluster.name, conn.endpoint.key)
        idle = self._idle.get(key)
        if idle is None:
            self._idle[key] = [conn]
        else:
            idle.append(conn)

    def retain(self, clusters: Collection[str]) -> None:
        """Close idle connections of clusters no longer in the snapshot."""
        for key in [k for k in self._idle if k[0] not in clusters]:
            for conn in self._idle.pop(key):
                conn.close()

    def close_all(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
