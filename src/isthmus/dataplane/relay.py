"""Bidirectional TCP relay between a downstream (client) and an upstream connection.

TCP relaying is kernel work, so the relay's job is to stay out of the way while keeping three
promises Envoy's ``tcp_proxy`` keeps:

* **bounded buffering** — at most ``buffer_size`` bytes (plus one read) are held per direction;
  a slow reader stops the fast writer instead of growing memory;
* **half-close passes through** — EOF from one side becomes ``shutdown(SHUT_WR)`` towards the
  other once pending bytes are flushed, and the reverse direction keeps flowing (nginx ``stream``
  and several Python proxies truncate data here);
* **resets propagate** — a reset on one side resets the other, so a truncated stream is never
  mistaken for a complete one and nobody hangs.

Two engines implement them.  With plain sockets on Linux, :func:`relay` uses ``os.splice``
through one pipe per direction (the pipe *is* the per-direction buffer), driven by the event loop's
``add_reader``/``add_writer`` — no threads, no copies into Python.  Otherwise (TLS on a side, no
splice, or asked for) :func:`relay_transports` relays between asyncio transports with
``pause_reading``/``resume_reading`` flow control; the TLS code hands its transports to it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import ClassVar, cast

from isthmus.dataplane.relaybase import (
    DEFAULT_BUFFER_SIZE,
    EndReason,
    RelayEngine,
    RelayStats,
    Role,
    reset_reason,
    set_reset_on_close,
)
from isthmus.dataplane.splice import SpliceRelay, splice_supported

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "READ_CHUNK",
    "RelayStats",
    "relay",
    "relay_transports",
    "splice_supported",
]

READ_CHUNK = 64 * 1024
"""Bytes read per call on the protocol path (big reads matter for bulk throughput).

A direction holds at most ``buffer_size + READ_CHUNK`` bytes: the write buffer may exceed its
high-water mark by the one read that crossed it before reading pauses."""

_HANDOFF_MIN = READ_CHUNK // 4


async def relay(
    client: socket.socket,
    upstream: socket.socket,
    *,
    use_splice: bool | None = None,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    idle_timeout: float | None = None,
    max_duration: float | None = None,
    stats: RelayStats | None = None,
) -> RelayStats:
    """Relay bytes between two connected plain sockets until both directions are done.

    The relay owns both sockets and closes them.  ``use_splice=None`` uses splice when it
    works; ``False`` forces the portable protocol path.  ``idle_timeout`` closes both sides
    after that many seconds without a byte either way, ``max_duration`` after that long in all.
    Pass ``stats`` to watch the counters while the relay runs.
    """
    for sock in (client, upstream):
        if isinstance(sock, ssl.SSLSocket):
            raise TypeError("relay() takes plain sockets; use relay_transports() for TLS")
        sock.setblocking(False)
    loop = asyncio.get_running_loop()
    if stats is None:
        stats = RelayStats()
    if use_splice is None:
        use_splice = splice_supported()
    if use_splice:
        try:
            engine = SpliceRelay(
                loop, client, upstream, buffer_size, stats, idle_timeout, max_duration
            )
        except OSError:
            pass  # no pipes to be had (fd limit): the protocol path needs none
        else:
            engine.start()
            return await engine.wait()
    transports: list[asyncio.Transport] = []
    parked: list[_Parked] = []
    try:
        for sock in (client, upstream):
            transport, protocol = await loop.connect_accepted_socket(_Parked, sock)
            transports.append(transport)
            parked.append(protocol)
    except BaseException:
        for transport in transports:
            transport.abort()
        client.close()
        upstream.close()
        raise
    return await relay_transports(
        transports[0],
        transports[1],
        buffer_size=buffer_size,
        idle_timeout=idle_timeout,
        max_duration=max_duration,
        to_upstream=bytes(parked[0].early),
        to_client=bytes(parked[1].early),
        stats=stats,
    )


async def relay_transports(
    client: asyncio.Transport,
    upstream: asyncio.Transport,
    *,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    idle_timeout: float | None = None,
    max_duration: float | None = None,
    to_upstream: bytes = b"",
    to_client: bytes = b"",
    stats: RelayStats | None = None,
) -> RelayStats:
    """Relay between two open asyncio transports (either may be TLS) and close both at the end.

    The transports' protocols are replaced by the relay's.  ``to_upstream``/``to_client`` are
    bytes the caller already read from the other side (a sniffed preface, say); they are
    written first and counted.  TLS cannot half-close, so EOF towards a TLS transport closes it
    (``close_notify``) after flushing; plain TCP sides half-close as usual.
    """
    loop = asyncio.get_running_loop()
    if stats is None:
        stats = RelayStats()
    stats.mode = "protocol"
    engine = _TransportRelay(loop, stats, idle_timeout, max_duration)
    c = _Side(engine, "client", client)
    u = _Side(engine, "upstream", upstream)
    c.peer, u.peer = u, c
    engine.sides = (c, u)
    for side in engine.sides:
        side.transport.set_protocol(side)
        side.transport.set_write_buffer_limits(high=buffer_size, low=buffer_size // 2)
    if to_upstream:
        upstream.write(to_upstream)
        engine.moved(True, len(to_upstream), upstream.get_write_buffer_size())
    if to_client:
        client.write(to_client)
        engine.moved(False, len(to_client), client.get_write_buffer_size())
    for side in engine.sides:
        if side.transport.is_closing():
            engine.abort(reset_reason(side.role), side.role, "closed before the relay began")
            break
        if not side.paused:  # the early bytes may already have filled the other side's buffer
            side.transport.resume_reading()
    return await engine.wait()


class _ReadBuffer:
    """One ``READ_CHUNK`` read buffer per thread (so per event loop), shared by every side.

    Reads are synchronous between ``get_buffer`` and ``buffer_updated``, so one buffer serves
    all connections: an idle connection then pins no buffer of its own (a 64 KiB buffer per
    side made 1,000 idle relays cost 260 MB).  A big read hands the buffer itself to the peer's
    transport without copying and a fresh one takes its place.
    """

    _by_thread: ClassVar[dict[int, memoryview]] = {}

    @classmethod
    def get(cls) -> memoryview:
        ident = threading.get_ident()
        buf = cls._by_thread.get(ident)
        if buf is None:
            buf = cls._by_thread[ident] = memoryview(bytearray(READ_CHUNK))
        return buf

    @classmethod
    def take(cls, nbytes: int) -> memoryview:
        """The first ``nbytes`` of the shared buffer, which is replaced."""
        ident = threading.get_ident()
        data = cls._by_thread[ident][:nbytes]
        cls._by_thread[ident] = memoryview(bytearray(READ_CHUNK))
        return data


class _Parked(asyncio.BufferedProtocol):
    """Holds a fresh transport with reading paused until the relay takes it over.

    uvloop starts reading *after* ``connection_made`` returns, ignoring a pause made there, so
    reading is paused again on the first data; reading into a ``READ_CHUNK`` buffer keeps what
    is held here within the relay's usual bound.
    """

    def __init__(self) -> None:
        self.early = bytearray()
        self.transport: asyncio.ReadTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.ReadTransport, transport)
        self.transport.pause_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _ReadBuffer.get()

    def buffer_updated(self, nbytes: int) -> None:
        self.early += _ReadBuffer.get()[:nbytes]
        if self.transport is not None:
            self.transport.pause_reading()


class _Side(asyncio.BufferedProtocol):
    """One connection of a transport relay; what it reads is written to its peer."""

    peer: _Side

    def __init__(self, engine: _TransportRelay, role: Role, transport: asyncio.Transport) -> None:
        self.engine = engine
        self.role: Role = role
        self.transport = transport
        self.to_upstream = role == "client"
        self.tls = transport.get_extra_info("sslcontext") is not None
        self.eof = False
        self.lost = False
        self.paused = False

    # Reading: hand big reads over without copying, copy small ones so a trickle of tiny
    # packets towards a stalled reader cannot pin a 64 KiB buffer each.  The buffer is a
    # memoryview because asyncio's TLS reader fills it in pieces with ``buf[offset:]``, which
    # on a bytearray would fill a copy.
    def get_buffer(self, sizehint: int) -> memoryview:
        return _ReadBuffer.get()

    def buffer_updated(self, nbytes: int) -> None:
        peer = self.peer
        if peer.lost:
            return
        data: bytes | memoryview
        if nbytes >= _HANDOFF_MIN:
            data = _ReadBuffer.take(nbytes)
        else:
            data = _ReadBuffer.get()[:nbytes].tobytes()
        peer.transport.write(data)
        self.engine.moved(self.to_upstream, nbytes, peer.transport.get_write_buffer_size())

    def eof_received(self) -> bool:
        if not self.eof:
            self.eof = True
            self.engine.half_closed(self)
        return not self.tls  # keep a TCP side open for writing; TLS closes on close_notify

    # Writing: our write buffer is over the bound, so stop reading the side that fills it.
    def pause_writing(self) -> None:
        source = self.peer
        if not (source.eof or source.lost or source.paused):
            source.paused = True
            source.transport.pause_reading()

    def resume_writing(self) -> None:
        source = self.peer
        if source.paused:
            source.paused = False
            if not (source.eof or source.lost):
                source.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost:
            self.lost = True
            self.engine.side_lost(self, exc)


class _TransportRelay(RelayEngine):
    sides: tuple[_Side, _Side]

    def moved(self, to_upstream: bool, nbytes: int, buffered: int) -> None:
        stats = self.stats
        if to_upstream:
            stats.client_to_upstream += nbytes
            if buffered > stats.peak_buffered_to_upstream:
                stats.peak_buffered_to_upstream = buffered
        else:
            stats.upstream_to_client += nbytes
            if buffered > stats.peak_buffered_to_client:
                stats.peak_buffered_to_client = buffered
        if self.idle_timeout is not None:
            self.last_active = self.loop.time()

    def half_closed(self, side: _Side) -> None:
        """``side`` sent EOF: pass it on once flushed; when both have, close both."""
        peer = side.peer
        if not peer.lost:
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
            else:
                peer.transport.close()
        if peer.eof:
            for s in self.sides:
                if not s.lost:
                    s.transport.close()

    def side_lost(self, side: _Side, exc: Exception | None) -> None:
        if exc is not None and not self.ending:
            self.abort(reset_reason(side.role), side.role, str(exc))
        elif not self.ending and not (side.eof and side.peer.eof):
            # Closed cleanly but early (a TLS peer's close_notify): nothing more can reach it,
            # so end the other side gracefully once its pending bytes are flushed.
            if not side.eof:
                side.eof = True
                self.half_closed(side)
            if not side.peer.lost:
                side.peer.transport.close()
        if all(s.lost for s in self.sides):
            self.finish()

    def abort(self, reason: EndReason, culprit: Role | None, error: str | None) -> None:
        if self.ending:
            return
        self.ending = True
        self.record_end(reason, error)
        for side in self.sides:
            if side.lost:
                continue
            if culprit is not None and side.role != culprit:
                sock = side.transport.get_extra_info("socket")
                if sock is not None:
                    set_reset_on_close(sock)
            side.transport.abort()


async def relay_transport_to_socket(
    client: asyncio.Transport,
    upstream: socket.socket,
    *,
    to_upstream: bytes = b"",
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    idle_timeout: float | None = None,
) -> RelayStats:
    """Relay an open client transport (an HTTP CONNECT, a terminated TLS connection) with a
    freshly connected upstream socket; the socket is adopted without losing early bytes."""
    loop = asyncio.get_running_loop()
    upstream.setblocking(False)
    try:
        transport, parked = await loop.connect_accepted_socket(_Parked, upstream)
    except BaseException:
        upstream.close()
        client.abort()
        raise
    return await relay_transports(
        client,
        transport,
        buffer_size=buffer_size,
        idle_timeout=idle_timeout,
        to_upstream=to_upstream,
        to_client=bytes(parked.early),
    )
