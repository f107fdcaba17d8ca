"""Envoy's ``tcp_proxy`` for one connection: route, pick a cluster, connect, relay.

Plain on both sides, bytes move by ``splice``; when the client side is a terminated TLS
transport or the cluster originates TLS (DestinationRule ``tls``), the transport relay is used.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from isthmus.dataplane.balancer import ClusterStates
from isthmus.dataplane.relay import relay, relay_transport_to_socket, relay_transports
from isthmus.dataplane.routing import pick_weighted
from isthmus.dataplane.telemetry import Telemetry
from isthmus.dataplane.tls_cache import ContextCache
from isthmus.dataplane.tls_context import check_peer
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.upstream import UpstreamConnection, UpstreamError, connect_upstream
from isthmus.obs.accesslog import TcpEntry
from isthmus.snapshot.simulate import select_tcp_route
from isthmus.snapshot.types import Cluster, Snapshot, TcpProxy

log = logging.getLogger("isthmus.tcp")


@dataclass
class TcpContext:
    """What every TCP connection of one gateway shares."""

    clusters: ClusterStates
    rng: random.Random
    use_splice: bool | None = None
    tls: ContextCache = field(default_factory=ContextCache)
    telemetry: Telemetry = field(default_factory=Telemetry)


class Parked(asyncio.Protocol):
    """Holds a new transport (a TLS handshake just done, an adopted socket) with reading
    paused, keeping any bytes that arrived early, until a relay takes it over."""

    def __init__(self) -> None:
        self.early = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.early += data
        if self.transport is not None:
            self.transport.pause_reading()


async def _connect(cluster: Cluster, ctx: TcpContext, peer_ip: str) -> UpstreamConnection | None:
    try:
        return await connect_upstream(cluster, ctx.clusters, peer_ip)
    except UpstreamError as exc:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s: %s", peer_ip, cluster.name, exc)
        return None


async def _originate(
    cluster: Cluster, ctx: TcpContext, upstream: UpstreamConnection
) -> tuple[asyncio.Transport, bytes] | None:
    """TLS towards the upstream (DestinationRule ``tls`` SIMPLE/MUTUAL)."""
    assert cluster.tls is not None
    loop = asyncio.get_running_loop()
    try:
        secret = dict(cluster.tls.secret) if cluster.tls.secret else None
        context, sni = ctx.tls.get_client(cluster.tls, host=cluster.service, secret=secret)
        transport, parked = await loop.create_connection(
            Parked,
            sock=upstream.sock,
            ssl=context,
            server_hostname=sni or None,
            ssl_handshake_timeout=cluster.connection_pool.connect_timeout,
        )
    except (TLSConfigError, ssl.SSLError, OSError, TimeoutError) as exc:
        log.warning("TLS to %s failed: %s", cluster.name, exc)
        upstream.sock.close()
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None and not check_peer(ssl_object):
        log.warning("TLS to %s: server certificate has none of the subjectAltNames", cluster.name)
        transport.abort()
        return None
    return transport, bytes(parked.early)


class _Record:
    """Istio's TCP metrics and Envoy's access log line for one connection."""

    def __init__(
        self,
        telemetry: Telemetry,
        conn: socket.socket,
        peer: tuple[str, int],
        cluster: Cluster | None,
        sni: str | None,
    ) -> None:
        self.telemetry = telemetry
        self.enabled = telemetry.metrics is not None or telemetry.log is not None
        if not self.enabled:
            return
        self.cluster = cluster.name if cluster is not None else ""
        self.peer = f"{peer[0]}:{peer[1]}"
        try:
            local = conn.getsockname()
            self.local = f"{local[0]}:{local[1]}"
        except OSError:
            self.local = ""
        self.sni = sni
        self.upstream = ""
        self.series: Any = None
        self.start = time.time()
        self.began = time.monotonic()

    def opened(self, upstream: str) -> None:
        if not self.enabled:
            return
        self.upstream = upstream
        if self.telemetry.metrics is not None:
            self.series = self.telemetry.metrics.tcp_open(self.cluster, upstream)

    def failed(self, flags: str) -> None:
        if not self.enabled:
            return
        if self.telemetry.metrics is not None and self.cluster:
            self.telemetry.metrics.tcp_failed(self.cluster, "", flags)
        self._log(0, 0, flags)

    def closed(self, sent: int, received: int) -> None:
        if not self.enabled:
            return
        if self.telemetry.metrics is not None and self.series is not None:
            self.telemetry.metrics.tcp_close(self.series, sent, received)
        self._log(sent, received, "-")

    def _log(self, sent: int, received: int, flags: str) -> None:
        log = self.telemetry.log
        if log is None:
            return
        log.tcp(
            TcpEntry(
                self.start,
                (time.monotonic() - self.began) * 1000.0,
                received,
                sent,
                flags,
                self.local,
                self.peer,
                upstream_host=self.upstream or None,
                upstream_cluster=self.cluster or None,
                requested_server_name=self.sni,
            )
        )


def _route(
    proxy: TcpProxy,
    snapshot: Snapshot,
    gateway_port: int,
    peer: tuple[str, int],
    local: tuple[str, int],
    sni: str | None,
    rng: random.Random,
) -> Cluster | None:
    route = select_tcp_route(proxy, gateway_port, peer[0], local[0], sni)
    if route is None:
        return None
    return snapshot.clusters.get(pick_weighted(route.clusters, rng).cluster)


async def proxy_tcp(
    conn: socket.socket,
    peer: tuple[str, int],
    local: tuple[str, int],
    gateway_port: int,
    proxy: TcpProxy,
    snapshot: Snapshot,
    ctx: TcpContext,
    sni: str | None = None,
) -> None:
    """Serve one plain (or passed-through TLS) connection on the snapshot it was accepted
    under.  No route, a missing cluster or no reachable endpoint closes it without a byte, as
    Envoy does (response flags NR, NC, UH/UF)."""
    cluster = _route(proxy, snapshot, gateway_port, peer, local, sni, ctx.rng)
    await proxy_to_cluster(conn, peer, cluster, ctx, sni)


async def proxy_to_cluster(
    conn: socket.socket,
    peer: tuple[str, int],
    cluster: Cluster | None,
    ctx: TcpContext,
    sni: str | None = None,
) -> None:
    """Connect to ``cluster`` and relay; no cluster or no endpoint closes the client."""
    record = _Record(ctx.telemetry, conn, peer, cluster, sni)
    upstream = await _connect(cluster, ctx, peer[0]) if cluster is not None else None
    if cluster is None or upstream is None:
        record.failed("NR" if cluster is None else "UF")
        conn.close()
        return
    pool = cluster.connection_pool
    record.opened(upstream.endpoint.key)
    with upstream:
        if cluster.tls is None:
            stats = await relay(
                conn,
                upstream.sock,
                use_splice=ctx.use_splice,
                idle_timeout=pool.idle_timeout or None,
                max_duration=pool.max_connection_duration,
            )
            record.closed(stats.upstream_to_client, stats.client_to_upstream)
            return
        originated = await _originate(cluster, ctx, upstream)
        if originated is None:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        client, parked = await loop.connect_accepted_socket(Parked, conn)
        await relay_transports(
            client,
            originated[0],
            to_upstream=bytes(parked.early),
            to_client=originated[1],
            idle_timeout=pool.idle_timeout or None,
            max_duration=pool.max_connection_duration,
        )


async def proxy_tcp_transport(
    client: asyncio.Transport,
    early: bytes,
    peer: tuple[str, int],
    local: tuple[str, int],
    gateway_port: int,
    proxy: TcpProxy,
    snapshot: Snapshot,
    ctx: TcpContext,
    sni: str | None,
) -> None:
    """The same for a client whose TLS the gateway terminated (Gateway TLS SIMPLE/MUTUAL)."""
    cluster = _route(proxy, snapshot, gateway_port, peer, local, sni, ctx.rng)
    upstream = await _connect(cluster, ctx, peer[0]) if cluster is not None else None
    if cluster is None or upstream is None:
        client.abort()
        return
    pool = cluster.connection_pool
    with upstream:
        if cluster.tls is None:
            await relay_transport_to_socket(
                client, upstream.sock, to_upstream=early, idle_timeout=pool.idle_timeout or None
            )
            return
        originated = await _originate(cluster, ctx, upstream)
        if originated is None:
            client.abort()
            return
        await relay_transports(
            client,
            originated[0],
            to_upstream=early,
            to_client=originated[1],
            idle_timeout=pool.idle_timeout or None,
            max_duration=pool.max_connection_duration,
        )
