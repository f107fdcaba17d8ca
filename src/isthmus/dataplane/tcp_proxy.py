"""Envoy's ``tcp_proxy`` for one accepted connection: route, pick a cluster, connect, relay."""

from __future__ import annotations

import logging
import random
import socket

from isthmus.dataplane.balancer import ClusterStates
from isthmus.dataplane.relay import relay
from isthmus.dataplane.routing import pick_weighted
from isthmus.dataplane.upstream import UpstreamError, connect_upstream
from isthmus.snapshot.simulate import select_tcp_route
from isthmus.snapshot.types import Snapshot, TcpProxy

log = logging.getLogger("isthmus.tcp")


async def proxy_tcp(
    conn: socket.socket,
    peer: tuple[str, int],
    local: tuple[str, int],
    gateway_port: int,
    proxy: TcpProxy,
    snapshot: Snapshot,
    clusters: ClusterStates,
    rng: random.Random,
    use_splice: bool | None,
) -> None:
    """Serve one connection on the snapshot it was accepted under.

    No matching route, a missing cluster or no reachable endpoint closes the connection
    without a byte, as Envoy does (response flags NR, NC, UH/UF).
    """
    route = select_tcp_route(proxy, gateway_port, peer[0], local[0], None)
    if route is None:
        conn.close()
        return
    cluster = snapshot.clusters.get(pick_weighted(route.clusters, rng).cluster)
    if cluster is None:
        conn.close()
        return
    try:
        upstream = await connect_upstream(cluster, clusters, peer[0])
    except UpstreamError as exc:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s:%d -> %s: %s", peer[0], peer[1], cluster.name, exc)
        conn.close()
        return
    except BaseException:
        conn.close()
        raise
    pool = cluster.connection_pool
    with upstream:
        await relay(
            conn,
            upstream.sock,
            use_splice=use_splice,
            idle_timeout=pool.idle_timeout or None,
            max_duration=pool.max_connection_duration,
        )
