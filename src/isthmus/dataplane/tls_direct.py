"""HTTPS listeners served without sniffing: the event loop accepts and handshakes on its own.

A TLS listener whose one filter chain terminates TLS into HTTP needs nothing from the
ClientHello but its SNI, which OpenSSL hands to an ``sni_callback``.  Such a listener is served
by ``loop.create_server(ssl=...)``: uvloop accepts and runs the handshake in C, with no
``MSG_PEEK`` of the hello, no parse of it in Python and no task per connection (the sniffing
path of :mod:`isthmus.dataplane.tls_listener` cost about as much CPU as the handshake).

The callback keeps the per-connection semantics of the sniffing path: it reads the snapshot
current at that moment, selects the filter chain by SNI (none: the handshake is refused with
``unrecognized_name``), and takes the chain's context from the :class:`ContextCache` as it is
now, so a rotated certificate reaches the next handshake.  The server's own context (the
*front*) is one the cache keeps for this listener alone (its ``sni_callback`` is set); when
the cache's current context is another one (a rotation), the callback switches to it, which
OpenSSL allows for the certificate, key and trust store but not for versions, ciphers, options
or client-certificate mode (see :mod:`isthmus.dataplane.tls_sni`): a context that differs in
those is refused until the listener is served anew with it (:func:`front_for`, compared on
every snapshot publish).  With one filter chain, sessions resumed from the front's cache are
always that chain's, so resumption cannot cross virtual hosts.

Listeners with several chains, passthrough or TLS into TCP keep the sniffing path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, cast

from isthmus.dataplane.http_proxy import DownstreamHttp, listener_address
from isthmus.dataplane.tls_context import check_peer
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.tls_sni import handshake_settings
from isthmus.snapshot.simulate import select_filter_chain
from isthmus.snapshot.types import FilterChain, HttpConnectionManager, Listener

if TYPE_CHECKING:
    from isthmus.dataplane.server import Gateway

log = logging.getLogger("isthmus.tls")
HANDSHAKE_TIMEOUT = 10.0
REMEMBER = 1.0
MAX_REMEMBERED = 1024
_CHAIN = "isthmus_chain"
"""The attribute of the ``SSLObject`` where the callback leaves the selected chain's name."""


def direct_chain(listener: Listener) -> FilterChain | None:
    """The listener's one filter chain when it terminates TLS into HTTP, else ``None``."""
    if len(listener.filter_chains) != 1:
        return None
    chain = listener.filter_chains[0]
    if chain.transport != "tls" or chain.tls is None or chain.auto_passthrough:
        return None
    if not isinstance(chain.application, HttpConnectionManager):
        return None
    return chain


def front_for(gateway: Gateway, listener: Listener) -> ssl.SSLContext | None:
    """The context to serve ``listener`` directly with, or ``None``: sniff instead (its
    chains do not qualify, or its context cannot be built: the sniffing path then refuses
    each connection and says why)."""
    chain = direct_chain(listener)
    if chain is None or chain.tls is None:
        return None
    try:
        return gateway.tls_contexts.get_server(chain.tls, owner=listener.name)
    except (TLSConfigError, ssl.SSLError, OSError):
        return None


Choice = tuple[str, ssl.SSLContext] | int
"""A filter chain's name and its context now, or the TLS alert that refuses the handshake."""


class _Selector:
    """The ``sni_callback`` of one listener's front context.

    Its choice per server name is remembered for the snapshot it was made on and for at most
    :data:`REMEMBER` seconds, so a rotated certificate file (the cache looks at files once a
    second) is picked up within two; a new snapshot (a changed Secret) at once."""

    def __init__(self, gateway: Gateway, listener: str, front: ssl.SSLContext) -> None:
        self.gateway = gateway
        self.listener = listener
        self.front = front
        self.settings = handshake_settings(front)
        self._snapshot: object = None
        self._until = 0.0
        self._choices: dict[str | None, Choice] = {}

    def __call__(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext
    ) -> int | None:
        snapshot = self.gateway.snapshot
        now = time.monotonic()
        if snapshot is not self._snapshot or now >= self._until:
            self._snapshot, self._until = snapshot, now + REMEMBER
            self._choices.clear()
        choice = self._choices.get(server_name)
        if choice is None:
            choice = self._choose(server_name)
            if len(self._choices) < MAX_REMEMBERED:  # a client picks the names: bounded
                self._choices[server_name] = choice
        if isinstance(choice, int):
            return choice
        chain, ctx = choice
        if ctx is not self.front:
            ssl_object.context = ctx
        setattr(ssl_object, _CHAIN, chain)
        return None

    def _choose(self, server_name: str | None) -> Choice:
        listener = self.gateway.snapshot.listener(self.listener)
        if listener is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        chain = select_filter_chain(listener, True, server_name)
        if chain is None or chain.tls is None or chain is not direct_chain(listener):
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # no filter chain: Envoy's NR
        try:
            ctx = self.gateway.tls_contexts.get_server(chain.tls, owner=self.listener)
        except (TLSConfigError, ssl.SSLError, OSError) as exc:
            log.warning("listener %s chain %s: %s", self.listener, chain.name, exc)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        if ctx is not self.front and handshake_settings(ctx) != self.settings:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE  # until served anew with it
        return chain.name, ctx


class HttpsDownstream(DownstreamHttp):
    """HTTP on a directly served TLS connection: the chain is the one the handshake chose."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chain = getattr(ssl_object, _CHAIN, None)
        if chain is None or not check_peer(ssl_object):  # MUTUAL's subjectAltNames
            cast(asyncio.Transport, transport).abort()
            return
        self.chain = chain
        super().connection_made(transport)


async def serve_https(
    gateway: Gateway, listener: Listener, sock: socket.socket, front: ssl.SSLContext
) -> asyncio.AbstractServer:
    """Serve ``listener`` on ``sock`` with ``front`` (from :func:`front_for`).

    The server gets a duplicate of ``sock``: closing the server closes only that, so the
    listener can be served anew (or handed over) on the same socket."""
    front.sni_callback = _Selector(gateway, listener.name, front)
    http_ctx = gateway.http_context()
    name, port = listener.name, listener.gateway_port
    local = listener_address(sock)

    def factory() -> HttpsDownstream:
        return HttpsDownstream(http_ctx, name, "", "https", port, local_address=local)

    loop = asyncio.get_running_loop()
    return await loop.create_server(
        factory,
        sock=sock.dup(),
        ssl=front,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
        backlog=4096,
    )
