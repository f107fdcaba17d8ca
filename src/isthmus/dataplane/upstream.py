"""Connecting to a cluster: pick an endpoint, connect, and try another one if that fails.

This is the part of Envoy's router/tcp_proxy that turns "send it to cluster X" into a socket:

* endpoints come from the balancer (:mod:`isthmus.dataplane.balancer`); failed ones are
  reported to outlier detection and excluded for the next attempt, so a retry goes to a
  *different* endpoint, as Istio's default retry policy asks;
* ``connectionPool.tcp.connectTimeout`` bounds each attempt (name resolution included),
  ``tcpKeepalive`` and ``TCP_NODELAY`` are set on every upstream socket;
* endpoints with ``resolve`` (``ExternalName`` services, DNS ``ServiceEntry``s) are looked up
  at connect time with the loop's resolver, so a DNS change is picked up without a reload;
* ``maxConnections`` is Envoy's circuit breaker: past it the connection is refused at once.

Failures come back as a small hierarchy whose ``response_flag`` is Envoy's access-log flag and
whose messages match Envoy's local replies, so the HTTP layer can answer exactly as Envoy does.
The result is a raw non-blocking socket: the splice relay needs one, and the TLS origination
code can wrap it (``loop.create_connection(sock=..., ssl=...)``).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import os
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from isthmus.dataplane.balancer import ClusterState, ClusterStates, EndpointState
from isthmus.snapshot.types import Cluster, ConnectionPool, Endpoint, TcpKeepalive

DEFAULT_MAX_ATTEMPTS = 3
T = TypeVar("T")


class UpstreamError(Exception):
    """No upstream connection could be had; ``response_flag`` is Envoy's access-log flag."""

    response_flag = ""

    def __init__(self, cluster: str, message: str) -> None:
        super().__init__(message)
        self.cluster = cluster


class NoHealthyUpstream(UpstreamError):
    """The cluster has no endpoint to try (none at all, or all ejected/excluded).  HTTP: 503
    ``no healthy upstream``."""

    response_flag = "UH"

    def __init__(self, cluster: str) -> None:
        super().__init__(cluster, f"no healthy upstream for {cluster}")


class UpstreamOverflow(UpstreamError):
    """``maxConnections`` reached: the circuit breaker refuses at once.  HTTP: 503."""

    response_flag = "UO"

    def __init__(self, cluster: str, limit: int) -> None:
        super().__init__(cluster, f"{cluster}: {limit} upstream connections, the maximum")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """One failed attempt.  ``reason`` is Envoy's reset reason (``connection failure``,
    ``connection timeout``) or ``dns resolution failure``; ``errno`` when the kernel gave one."""

    endpoint: str
    reason: str
    errno: int | None = None
    detail: str = ""


class UpstreamConnectError(UpstreamError):
    """Every attempt failed; ``failures`` lists them in order, the last one is the reason."""

    response_flag = "UF"

    def __init__(self, cluster: str, failures: tuple[ConnectFailure, ...]) -> None:
        last = failures[-1]
        super().__init__(
            cluster,
            f"{cluster}: {last.reason} to {last.endpoint} "
            f"after {len(failures)} attempt(s): {last.detail}",
        )
        self.failures = failures

    @property
    def reason(self) -> str:
        return self.failures[-1].reason

    @property
    def local_reply_body(self) -> str:
        """Envoy's 503 body for this failure, e.g. ``... transport failure reason: delayed
        connect error: 111``."""
        last = self.failures[-1]
        body = "upstream connect error or disconnect/reset before headers. "
        body += f"reset reason: {last.reason}"
        if last.errno is not None:
            body += f", transport failure reason: delayed connect error: {last.errno}"
        return body


@dataclass(eq=False, slots=True)
class UpstreamConnection:
    """A connected upstream socket plus the accounting to undo when it is done.

    The socket belongs to whoever relays it (the relay closes it); :meth:`release` must be
    called once the connection ends — use ``with`` — to give back the endpoint's active
    request/connection counts that LEAST_REQUEST and ``maxConnections`` read.
    """

    sock: socket.socket
    endpoint_state: EndpointState
    cluster_state: ClusterState
    address: tuple[Any, ...]
    attempts: int
    failures: tuple[ConnectFailure, ...] = ()
    _released: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoint_state.endpoint

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.cluster_state.release(self.endpoint_state)
            self.cluster_state.connection_closed(self.endpoint_state)

    def close(self) -> None:
        self.release()
        self.sock.close()

    def __enter__(self) -> UpstreamConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


async def connect_upstream(
    cluster: Cluster,
    states: ClusterStates,
    source_ip: str | None = None,
    *,
    hash_key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    final: bool = True,
    exclude: Collection[str] = (),
) -> UpstreamConnection:
    """Connect to an endpoint of ``cluster``, trying up to ``max_attempts`` distinct endpoints.

    ``source_ip`` feeds ``useSourceIp`` hashing; ``hash_key`` overrides it.  ``final=False``
    tells outlier detection a connect success is not yet the verdict (HTTP reports the
    response status later).  ``exclude`` names endpoints not to use (a retry's earlier ones).
    Raises :class:`UpstreamOverflow`, :class:`NoHealthyUpstream` or
    :class:`UpstreamConnectError`.
    """
    result: UpstreamConnection | tuple[object, EndpointState] = await connect_or_reuse(
        cluster,
        states,
        source_ip,
        hash_key=hash_key,
        max_attempts=max_attempts,
        final=final,
        exclude=exclude,
        reuse=None,
    )
    assert isinstance(result, UpstreamConnection)
    return result


async def connect_or_reuse(
    cluster: Cluster,
    states: ClusterStates,
    source_ip: str | None,
    *,
    reuse: Callable[[EndpointState], T | None] | None,
    hash_key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    final: bool = True,
    exclude: Collection[str] = (),
    first: EndpointState | None = None,
) -> UpstreamConnection | tuple[T, EndpointState]:
    """:func:`connect_upstream`, except that once the balancer picks an endpoint, ``reuse``
    may offer an idle pooled connection to it (HTTP keep-alive); then no socket is opened.
    ``first`` is an endpoint the balancer already picked for the first attempt."""
    state = states.get(cluster)
    pool = cluster.connection_pool
    tried: set[str] = set(exclude)
    failures: list[ConnectFailure] = []
    for _ in range(max(1, max_attempts)):
        chosen = first or state.choose(source_ip=source_ip, hash_key=hash_key, exclude=tried)
        first = None
        if chosen is None:
            break
        if reuse is not None:
            pooled = reuse(chosen)
            if pooled is not None:
                state.acquire(chosen)
                return pooled, chosen
        limit = pool.max_connections
        if limit is not None and state.active_connections >= limit:
            raise UpstreamOverflow(cluster.name, limit)
        tried.add(chosen.key)
        loop = asyncio.get_running_loop()  # only here: it costs a getpid(2) on Python 3.11
        state.connection_opened(chosen)
        try:
            sock, address = await asyncio.wait_for(
                _connect(loop, chosen.endpoint, pool), pool.connect_timeout
            )
        except socket.gaierror as exc:
            state.connection_closed(chosen)
            failures.append(ConnectFailure(chosen.key, "dns resolution failure", None, str(exc)))
            continue
        except TimeoutError as exc:  # asyncio's timeout, or the kernel's ETIMEDOUT
            state.connection_closed(chosen)
            state.connect_failed(chosen, timeout=True)
            failures.append(
                ConnectFailure(chosen.key, "connection timeout", _errno(exc), str(exc) or "timeout")
            )
            continue
        except OSError as exc:
            state.connection_closed(chosen)
            state.connect_failed(chosen)
            failures.append(ConnectFailure(chosen.key, "connection failure", exc.errno, str(exc)))
            continue
        except BaseException:
            state.connection_closed(chosen)
            raise
        state.connect_succeeded(chosen, final=final)
        state.acquire(chosen)
        return UpstreamConnection(sock, chosen, state, address, len(tried), tuple(failures))
    if not failures:
        raise NoHealthyUpstream(cluster.name)
    raise UpstreamConnectError(cluster.name, tuple(failures))


def _errno(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) else None


@functools.lru_cache(maxsize=4096)
def _literal_family(address: str) -> socket.AddressFamily | None:
    """The family of an IP literal, or ``None`` for a name that must be resolved."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


async def _connect(
    loop: asyncio.AbstractEventLoop, endpoint: Endpoint, pool: ConnectionPool
) -> tuple[socket.socket, tuple[Any, ...]]:
    family = None if endpoint.resolve else _literal_family(endpoint.address)
    address: tuple[Any, ...]
    if family is None:
        infos = await loop.getaddrinfo(endpoint.address, endpoint.port, type=socket.SOCK_STREAM)
        if not infos:
            raise socket.gaierror(errno.ENOENT, f"no address for {endpoint.address}")
        family, _, _, _, address = infos[0]
    else:
        address = (endpoint.address, endpoint.port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if pool.tcp_keepalive is not None:
            apply_keepalive(sock, pool.tcp_keepalive)
        await _sock_connect(loop, sock, address)
    except BaseException:
        sock.close()
        raise
    return sock, address


async def _sock_connect(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, address: tuple[Any, ...]
) -> None:
    """A non-blocking connect to a resolved address.

    uvloop's ``sock_connect`` sends even IP literals through its resolver thread; connecting
    directly and waiting for writability saves a thread hop and several wake-ups per
    connection (measured: about 20% of the CPU a new TCP connection costs).
    """
    err = sock.connect_ex(address)
    if err == 0:
        return
    if err not in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
        raise OSError(err, os.strerror(err))
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_writer(fd, _connected, ready)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def _connected(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def apply_keepalive(sock: socket.socket, keepalive: TcpKeepalive) -> None:
    """``tcpKeepalive``: turn keepalive on; unset fields keep the kernel's defaults."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (
        (getattr(socket, "TCP_KEEPIDLE", None), keepalive.time),
        (getattr(socket, "TCP_KEEPINTVL", None), keepalive.interval),
        (getattr(socket, "TCP_KEEPCNT", None), keepalive.probes),
    )
    for option, value in options:
        if option is not None and value is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(value)))
