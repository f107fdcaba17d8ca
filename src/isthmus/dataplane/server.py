"""The serving side: bind the snapshot's listeners, accept, and hand each connection to the
filter chain it matches, always on the snapshot current when it was accepted."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import socket
import ssl
from dataclasses import dataclass, field

from isthmus.dataplane.balancer import ClusterStates
from isthmus.dataplane.handover import ListenerSockets
from isthmus.dataplane.http_proxy import (
    DownstreamHttp,
    HttpContext,
    HttpSettings,
    MeshMode,
    close_idle,
    listener_address,
)
from isthmus.dataplane.http_upstream import HttpPool
from isthmus.dataplane.tcp_proxy import TcpContext, proxy_tcp
from isthmus.dataplane.telemetry import Telemetry
from isthmus.dataplane.tls_cache import ContextCache
from isthmus.dataplane.tls_direct import front_for, serve_https
from isthmus.dataplane.tls_listener import serve_tls_connection
from isthmus.snapshot.simulate import select_filter_chain
from isthmus.snapshot.types import HttpConnectionManager, Listener, Snapshot, TcpProxy

log = logging.getLogger("isthmus.server")
ACCEPT_BATCH = 64
BACKLOG = 4096


def open_listener(name: str, address: str, port: int) -> socket.socket:
    """A non-blocking listening socket; raises :class:`BindError` naming the listener."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(name, address, port, exc) from exc
    return sock


class BindError(Exception):
    """A listener's address could not be bound; names the listener and the reason."""

    def __init__(self, listener: str, address: str, port: int, cause: OSError) -> None:
        self.listener = listener
        reason = cause.strerror or str(cause)
        if cause.errno == errno.EACCES and port < 1024:
            reason += " (ports below 1024 need privileges: map the Gateway port to a higher "
            reason += "targetPort in the gateway Service)"
        super().__init__(f"listener {listener}: cannot bind {address}:{port}: {reason}")


@dataclass(frozen=True)
class ServeOptions:
    """``bind`` overrides every listener's address (tests and laptops bind 127.0.0.1)."""

    bind: str | None = None
    use_splice: bool | None = None
    http: HttpSettings = field(default_factory=HttpSettings)
    istio_ca: str | None = None
    mesh_port: int | None = None
    mesh_bind: str = "127.0.0.1"
    allow_any: bool = False


def listener_kind(listener: Listener) -> str | None:
    """``tcp``, ``http`` or ``tls`` (SNI-inspected: passthrough or terminated)."""
    chains = listener.filter_chains
    if not chains:
        return None
    if any(fc.transport != "raw_buffer" or fc.tls for fc in chains):
        return "tls"
    if all(isinstance(fc.application, TcpProxy) for fc in chains):
        return "tcp"
    if len(chains) == 1 and isinstance(chains[0].application, HttpConnectionManager):
        return "http"
    return None


def serves(listener: Listener) -> bool:
    return listener_kind(listener) is not None


@dataclass
class _Bound:
    listener_name: str
    sock: socket.socket
    server: asyncio.AbstractServer | None = None
    front: ssl.SSLContext | None = None
    """Set when the loop serves the TLS listener directly (``tls_direct``) with this."""


@dataclass
class Gateway:
    """Listeners bound for a snapshot; ``snapshot`` is swapped by plain assignment."""

    snapshot: Snapshot
    options: ServeOptions = field(default_factory=ServeOptions)
    clusters: ClusterStates = field(default_factory=ClusterStates)
    rng: random.Random = field(default_factory=random.Random)
    _bound: dict[str, _Bound] = field(default_factory=dict)
    _tasks: dict[asyncio.Task[None], str] = field(default_factory=dict)
    http: HttpContext | None = None
    tls_contexts: ContextCache = field(init=False)
    inherited: ListenerSockets = field(default_factory=ListenerSockets)
    telemetry: Telemetry = field(default_factory=Telemetry)
    ready: bool = False
    draining: bool = False
    """Listening sockets from a supervisor or a previous process, used instead of binding."""
    _tcp: TcpContext | None = None

    def tcp_context(self) -> TcpContext:
        if self._tcp is None:
            self._tcp = TcpContext(
                self.clusters,
                self.rng,
                self.options.use_splice,
                self.tls_contexts,
                self.telemetry,
            )
        return self._tcp

    def __post_init__(self) -> None:
        self.tls_contexts = ContextCache(istio_ca=self.options.istio_ca)

    def addresses(self) -> dict[str, tuple[str, int]]:
        """Listener name → the address actually bound (port 0 in tests becomes real)."""
        out: dict[str, tuple[str, int]] = {}
        for name, bound in self._bound.items():
            host, port = bound.sock.getsockname()[:2]
            out[name] = (host, port)
        return out

    def skipped(self) -> list[Listener]:
        return [lst for lst in self.snapshot.listeners if not serves(lst)]

    async def start(self) -> None:
        """Bind every served listener, all or nothing."""
        opened: list[_Bound] = []
        try:
            for listener in self.snapshot.listeners:
                if serves(listener):
                    opened.append(_Bound(listener.name, self._listen(listener)))
        except BindError:
            for bound in opened:
                bound.sock.close()
            raise
        for bound in opened:
            await self._activate(bound)
        if self.options.mesh_port is not None:
            await self._serve_mesh()
        self.ready = True
        if self.telemetry.metrics is not None:
            self.telemetry.metrics.set_snapshot(self.snapshot)

    async def _activate(self, bound: _Bound) -> None:
        self._bound[bound.listener_name] = bound
        served = self.snapshot.listener(bound.listener_name)
        assert served is not None
        kind = listener_kind(served)
        if kind == "http":
            bound.server = await self._serve_http(served, bound.sock)
        elif kind == "tls" and (front := front_for(self, served)) is not None:
            bound.front = front
            bound.server = await serve_https(self, served, bound.sock, front)
        else:
            asyncio.get_running_loop().add_reader(bound.sock.fileno(), self._accept, bound)

    async def _serve_tls_anew(self, listener: Listener) -> None:
        """A TLS listener whose direct serving changed (it now qualifies or no longer does,
        or its context changed): served again on the same socket, nothing refused."""
        bound = self._bound[listener.name]
        if front_for(self, listener) is bound.front:
            return
        if bound.server is not None:
            bound.server.close()  # closes its duplicate of the socket, not ours
            bound.server = None
        else:
            asyncio.get_running_loop().remove_reader(bound.sock.fileno())
        bound.front = None
        await self._activate(bound)

    def _deactivate(self, name: str) -> None:
        bound = self._bound.pop(name, None)
        if bound is None:
            return
        if bound.server is not None:
            bound.server.close()
        else:
            asyncio.get_running_loop().remove_reader(bound.sock.fileno())
        bound.sock.close()

    async def apply(self, snapshot: Snapshot, drain_seconds: float) -> None:
        """Publish ``snapshot``: bind its new listeners first (all or nothing: a BindError
        leaves the old snapshot serving), swap it in with one assignment, then stop accepting
        on removed listeners and let their connections drain for ``drain_seconds``.

        Open connections keep the snapshot they read; pools and endpoint state survive for
        clusters that are still there."""
        old = {lst.name: lst for lst in self.snapshot.listeners if serves(lst)}
        new = {lst.name: lst for lst in snapshot.listeners if serves(lst)}
        rekind = {
            n for n in old.keys() & new.keys() if listener_kind(old[n]) != listener_kind(new[n])
        }
        opened: list[_Bound] = []
        try:
            for name, listener in new.items():
                if name not in old:
                    opened.append(_Bound(name, self._listen(listener)))
        except BindError:
            for bound in opened:
                bound.sock.close()
            raise
        self.snapshot = snapshot
        if self.telemetry.metrics is not None:
            self.telemetry.metrics.set_snapshot(snapshot)
        for bound in opened:
            await self._activate(bound)
        for name in rekind:  # same port, another kind of listener: a brief re-bind
            self._deactivate(name)
            await self._activate(_Bound(name, self._listen(new[name])))
        for name in old.keys() & new.keys() - rekind:
            if listener_kind(new[name]) == "tls":
                await self._serve_tls_anew(new[name])
        removed = [name for name in old if name not in new]
        for name in removed:
            self._deactivate(name)
        self.clusters.retain(snapshot.clusters.keys())
        if self.http is not None:
            self.http.pool.retain(snapshot.clusters.keys())
        if removed:
            if self.http is not None:
                self.http.draining_listeners.update(removed)
                close_idle(self.http, set(removed))
            task = asyncio.ensure_future(self._drain(set(removed), drain_seconds))
            self._track(task, "")

    async def _drain(self, listeners: set[str], seconds: float) -> None:
        """Connections of removed listeners get ``seconds`` to finish, then are cut."""
        await asyncio.sleep(seconds)
        for task, name in list(self._tasks.items()):
            if name in listeners:
                task.cancel()
        if self.http is not None:
            for conn in list(self.http.connections):
                if conn.listener in listeners:
                    conn.abort()
            self.http.draining_listeners.difference_update(listeners)

    async def _serve_mesh(self) -> None:
        """The local explicit proxy (``--mesh-port``): 127.0.0.1 unless told otherwise, so it
        is never an open proxy."""
        port = self.options.mesh_port
        assert port is not None
        address = self.options.mesh_bind
        sock = self.inherited.take("mesh", address, port) or open_listener("mesh", address, port)
        ctx = self.http_context()
        mode = MeshMode(allow_any=self.options.allow_any)
        local = listener_address(sock)

        def factory() -> DownstreamHttp:
            return DownstreamHttp(ctx, "mesh", "mesh", "http", port, mode, local)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
        self._bound["mesh"] = _Bound("mesh", sock, server)

    def http_context(self) -> HttpContext:
        if self.http is None:
            pool = HttpPool(self.clusters, self.tls_contexts)
            self.http = HttpContext(
                self, pool, self.options.http, rng=self.rng, telemetry=self.telemetry
            )
        return self.http

    async def _serve_http(self, listener: Listener, sock: socket.socket) -> asyncio.AbstractServer:
        ctx = self.http_context()
        chain = listener.filter_chains[0].name
        name, port = listener.name, listener.gateway_port
        local = listener_address(sock)

        def factory() -> DownstreamHttp:
            return DownstreamHttp(ctx, name, chain, "http", port, local_address=local)

        loop = asyncio.get_running_loop()
        return await loop.create_server(factory, sock=sock, backlog=BACKLOG)

    def _listen(self, listener: Listener) -> socket.socket:
        address = self.options.bind or listener.address
        inherited = self.inherited.take(listener.name, address, listener.port)
        if inherited is not None:
            return inherited
        return open_listener(listener.name, address, listener.port)

    def listening_sockets(self) -> dict[str, socket.socket]:
        """Every socket this gateway accepts on, by listener name (for a takeover)."""
        return {name: bound.sock for name, bound in self._bound.items()}

    def _accept(self, bound: _Bound) -> None:
        """Accept a batch, then let the loop run: one wake-up serves a burst of clients."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = bound.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving what is open
                log.warning("accept on %s failed: %s", bound.listener_name, exc)
                return
            self._spawn(conn, peer, bound.listener_name)

    def _spawn(self, conn: socket.socket, peer: tuple[str, int], name: str) -> None:
        snapshot = self.snapshot  # read once: the connection finishes on this snapshot
        listener = snapshot.listener(name)
        if listener is not None and listener_kind(listener) == "tls":
            conn.setblocking(False)
            self._track(asyncio.ensure_future(serve_tls_connection(self, conn, peer, name)), name)
            return
        chain = select_filter_chain(listener, False, None) if listener else None
        if listener is None or chain is None or not isinstance(chain.application, TcpProxy):
            conn.close()
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.ensure_future(
            proxy_tcp(
                conn,
                peer,
                conn.getsockname(),
                listener.gateway_port,
                chain.application,
                snapshot,
                self.tcp_context(),
            )
        )
        self._track(task, name)

    def _track(self, task: asyncio.Task[None], listener: str) -> None:
        self._tasks[task] = listener
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection failed", exc_info=task.exception())

    def connections_by_listener(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in self._tasks.values():
            if name:
                counts[name] = counts.get(name, 0) + 1
        if self.http is not None:
            for conn in self.http.connections:
                counts[conn.listener] = counts.get(conn.listener, 0) + 1
        return counts

    @property
    def active_connections(self) -> int:
        http = len(self.http.connections) if self.http is not None else 0
        return len(self._tasks) + http

    def stop_listening(self) -> None:
        for name in list(self._bound):
            self._deactivate(name)

    async def close(self, drain_seconds: float = 0.0) -> None:
        """Stop accepting, let open connections finish for ``drain_seconds``, then cut them.

        HTTP connections between requests close at once; busy ones after their response
        (with ``connection: close``)."""
        self.draining = True
        self.stop_listening()
        waits: list[asyncio.Future[object]] = list(self._tasks)  # type: ignore[arg-type]
        if self.http is not None:
            close_idle(self.http)
            if self.http.connections:
                waits.append(asyncio.ensure_future(self.http.all_closed.wait()))
        if waits and drain_seconds > 0:
            await asyncio.wait(waits, timeout=drain_seconds)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            for conn in list(self.http.connections):
                conn.abort()
            self.http.pool.close_all()
        for waiter in waits:
            waiter.cancel()
