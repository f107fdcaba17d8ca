"""TLS listeners: peek at the ClientHello, pick the filter chain by SNI, then either pass the
bytes through untouched (PASSTHROUGH) or terminate TLS and hand the connection to HTTP or to
the TCP proxy — Envoy's tls_inspector followed by its filter chain match."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from isthmus.dataplane.http_proxy import DownstreamHttp
from isthmus.dataplane.tcp_proxy import Parked, proxy_tcp, proxy_tcp_transport, proxy_to_cluster
from isthmus.dataplane.tls_context import check_peer
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.proto.tls_hello import ClientHelloError, client_hello_sni
from isthmus.snapshot.simulate import select_filter_chain
from isthmus.snapshot.types import HttpConnectionManager, TcpProxy, cluster_for_sni

if TYPE_CHECKING:
    from isthmus.dataplane.server import Gateway

P = TypeVar("P", bound=asyncio.BaseProtocol)
log = logging.getLogger("isthmus.tls")
HELLO_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
MAX_HELLO = 64 * 1024


async def peek_client_hello(conn: socket.socket, timeout: float) -> tuple[str | None, bool]:
    """(SNI, is TLS) from the bytes waiting on ``conn``, read with MSG_PEEK so they stay
    there for whoever handles the connection next."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, ready)
        try:
            await asyncio.wait_for(ready, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return None, False
        finally:
            loop.remove_reader(conn.fileno())
        try:
            data = conn.recv(MAX_HELLO, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        except OSError:
            return None, False
        if not data:
            return None, False  # closed before a hello
        try:
            hello = client_hello_sni(data)
        except ClientHelloError:
            return None, False
        if hello is not None:
            return hello[0], True
        if len(data) >= MAX_HELLO:
            return None, False
        # The hello spans segments still in flight; the peeked bytes keep the socket
        # readable, so wait a moment instead of spinning on it.
        await asyncio.sleep(0.005)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def serve_tls_connection(
    gateway: Gateway, conn: socket.socket, peer: tuple[str, int], listener_name: str
) -> None:
    sni, is_tls = await peek_client_hello(conn, HELLO_TIMEOUT)
    snapshot = gateway.snapshot  # read once the connection says where it wants to go
    listener = snapshot.listener(listener_name)
    chain = select_filter_chain(listener, True, sni) if listener and is_tls else None
    if listener is None or chain is None:
        conn.close()  # no filter chain for this SNI: closed without data (NR)
        return
    app = chain.application
    if chain.auto_passthrough:
        name = cluster_for_sni(sni) if sni else None
        cluster = snapshot.clusters.get(name) if name else None
        await proxy_to_cluster(conn, peer, cluster, gateway.tcp_context())
        return
    if chain.tls is None:
        assert isinstance(app, TcpProxy)
        local, tcp_ctx = conn.getsockname(), gateway.tcp_context()
        await proxy_tcp(conn, peer, local, listener.gateway_port, app, snapshot, tcp_ctx, sni)
        return
    try:
        context = gateway.tls_contexts.get_server(chain.tls)
    except (TLSConfigError, ssl.SSLError, OSError) as exc:
        log.warning("listener %s chain %s: %s", listener_name, chain.name, exc)
        conn.close()
        return
    if isinstance(app, HttpConnectionManager):
        http_ctx = gateway.http_context()
        name, chain_name, port = listener.name, chain.name, listener.gateway_port

        def factory() -> DownstreamHttp:
            return DownstreamHttp(http_ctx, name, chain_name, "https", port)

        await _terminate(conn, context, factory)
        return
    assert isinstance(app, TcpProxy)
    terminated = await _terminate(conn, context, Parked)
    if terminated is None:
        return
    transport, parked = terminated
    local, tcp_ctx = transport.get_extra_info("sockname"), gateway.tcp_context()
    await proxy_tcp_transport(
        transport,
        bytes(parked.early),
        peer,
        local,
        listener.gateway_port,
        app,
        snapshot,
        tcp_ctx,
        sni,
    )


async def _terminate(
    conn: socket.socket, context: ssl.SSLContext, factory: Callable[[], P]
) -> tuple[asyncio.Transport, P] | None:
    """The TLS handshake on an accepted socket, then MUTUAL's peer check; None (and the
    connection closed) when either fails."""
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.connect_accepted_socket(
            factory, conn, ssl=context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
        )
    except (ssl.SSLError, OSError, TimeoutError):
        conn.close()
        return None
    if not _peer_ok(transport):
        transport.abort()
        return None
    return transport, protocol


def _peer_ok(transport: asyncio.BaseTransport) -> bool:
    """MUTUAL's subjectAltNames: checked once the handshake verified the client's chain."""
    ssl_object = transport.get_extra_info("ssl_object")
    return ssl_object is None or check_peer(ssl_object)
