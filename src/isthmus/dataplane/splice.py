"""The zero-copy relay engine: ``os.splice`` through one pipe per direction.

Bytes go socket → pipe → socket inside the kernel; Python only decides when.  The pipe is the
direction's whole buffer: its capacity is set to the buffer bound (``F_SETPIPE_SZ``), nothing is
read while it is full, so a slow reader holds back a fast writer at no memory cost beyond it.

Each direction is a small state machine driven by level-triggered ``add_reader`` on its source or
``add_writer`` on its destination — never both, so a full pipe cannot make the loop spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import os
import socket

from isthmus.dataplane.relaybase import (
    EndReason,
    RelayEngine,
    RelayStats,
    Role,
    reset_reason,
    set_reset_on_close,
)

_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
_PUMP_BUDGET = 1024 * 1024
"""Bytes one callback may move before yielding, so one bulk stream cannot starve the others."""

_IDLE, _READ, _WRITE = 0, 1, 2


@functools.cache
def splice_supported() -> bool:
    """Whether ``os.splice`` works here (probed once: some kernels and sandboxes lack it)."""
    if not hasattr(os, "splice"):
        return False
    try:
        a, b = socket.socketpair()
    except OSError:
        return False
    try:
        r, w = os.pipe()
    except OSError:
        a.close()
        b.close()
        return False
    try:
        a.send(b"x")
        return os.splice(b.fileno(), w, 1, flags=_FLAGS) == 1
    except OSError:
        return False
    finally:
        a.close()
        b.close()
        os.close(r)
        os.close(w)


def _open_pipe(size: int) -> tuple[int, int, int]:
    """A non-blocking pipe sized to ``size`` when the kernel allows; returns (r, w, capacity)."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    getsz = getattr(fcntl, "F_GETPIPE_SZ", None)
    capacity = 65536
    try:
        if setsz is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(w, setsz, size)
        if getsz is not None:
            capacity = fcntl.fcntl(w, getsz)
    except OSError:
        os.close(r)
        os.close(w)
        raise
    return r, w, capacity


class _Direction:
    """One direction: source socket → pipe → destination socket."""

    __slots__ = (
        "capacity",
        "done",
        "dst",
        "dst_role",
        "engine",
        "eof",
        "pending",
        "pipe_r",
        "pipe_w",
        "src",
        "src_role",
        "to_upstream",
        "waiting",
    )

    def __init__(
        self, engine: SpliceRelay, src: socket.socket, dst: socket.socket, to_upstream: bool
    ) -> None:
        self.engine = engine
        self.src = src.fileno()
        self.dst = dst.fileno()
        self.to_upstream = to_upstream
        self.src_role: Role = "client" if to_upstream else "upstream"
        self.dst_role: Role = "upstream" if to_upstream else "client"
        self.pipe_r, self.pipe_w, self.capacity = -1, -1, 0
        self.pending = 0
        self.eof = False
        self.done = False
        self.waiting = _IDLE

    def pump(self) -> None:
        """Move what can be moved now, then wait for the one event that allows more."""
        engine = self.engine
        if self.pipe_r < 0:
            return  # stopped while this callback was already queued
        moved = 0
        drained = False
        while moved < _PUMP_BUDGET:
            in_blocked = self.eof
            if not self.eof and self.pending < self.capacity:
                asked = self.capacity - self.pending
                try:
                    n = os.splice(self.src, self.pipe_w, asked, flags=_FLAGS)
                except BlockingIOError:
                    in_blocked = True  # source empty, or the pipe's page slots are full
                except OSError as exc:
                    engine.failed(self.src_role, exc)
                    return
                else:
                    if n:
                        self.pending += n
                        engine.received(self.to_upstream, n, self.pending)
                        # Less than asked: the socket is (almost surely) empty now, so once
                        # the pipe is flushed wait for readiness instead of a splice that
                        # would only fail with EAGAIN (one syscall saved per small message).
                        drained = n < asked
                    else:
                        self.eof = in_blocked = True
            if self.pending:
                try:
                    n = os.splice(self.pipe_r, self.dst, self.pending, flags=_FLAGS)
                except BlockingIOError:
                    self.wait(_WRITE)
                    return
                except OSError as exc:
                    engine.failed(self.dst_role, exc)
                    return
                self.pending -= n
                moved += n
                if drained and not self.pending:
                    self.wait(_READ)
                    return
            elif in_blocked:
                if self.eof:
                    self.finish()
                else:
                    self.wait(_READ)
                return
        self.wait(_WRITE if self.pending else _READ)

    def wait(self, what: int) -> None:
        if what == self.waiting:
            return
        loop = self.engine.loop
        if self.waiting == _READ:
            loop.remove_reader(self.src)
        elif self.waiting == _WRITE:
            loop.remove_writer(self.dst)
        if what == _READ:
            loop.add_reader(self.src, self.pump)
        elif what == _WRITE:
            loop.add_writer(self.dst, self.pump)
        self.waiting = what

    def finish(self) -> None:
        """Source sent EOF and the pipe is empty: half-close the destination."""
        self.wait(_IDLE)
        self.done = True
        with contextlib.suppress(OSError):
            os.close(self.pipe_r)
            os.close(self.pipe_w)
        self.pipe_r = self.pipe_w = -1
        self.engine.direction_done(self)

    def stop(self) -> None:
        self.wait(_IDLE)
        for fd in (self.pipe_r, self.pipe_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pipe_r = self.pipe_w = -1


class SpliceRelay(RelayEngine):
    """Relay two plain non-blocking sockets with splice; owns and closes both sockets."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        upstream: socket.socket,
        buffer_size: int,
        stats: RelayStats,
        idle_timeout: float | None,
        max_duration: float | None,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.directions = (
            _Direction(self, client, upstream, to_upstream=True),
            _Direction(self, upstream, client, to_upstream=False),
        )
        try:
            for d in self.directions:
                d.pipe_r, d.pipe_w, d.capacity = _open_pipe(buffer_size)
        except OSError:
            for d in self.directions:
                d.stop()
            raise
        stats.mode = "splice"
        super().__init__(loop, stats, idle_timeout, max_duration)

    def start(self) -> None:
        for d in self.directions:
            d.pump()

    def received(self, to_upstream: bool, nbytes: int, buffered: int) -> None:
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

    def direction_done(self, direction: _Direction) -> None:
        dst = self.upstream if direction.to_upstream else self.client
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:  # ENOTCONN: the peer is already fully gone
                self.failed(direction.dst_role, exc)
                return
        if all(d.done for d in self.directions):
            self.ending = True
            self._close()
            self.finish()

    def failed(self, role: Role, exc: OSError) -> None:
        self.abort(reset_reason(role), role, str(exc))

    def abort(self, reason: EndReason, culprit: Role | None, error: str | None) -> None:
        if self.ending:
            return
        self.ending = True
        self.record_end(reason, error)
        if culprit == "upstream":
            set_reset_on_close(self.client)
        elif culprit == "client":
            set_reset_on_close(self.upstream)
        self._close()
        self.finish()

    def _close(self) -> None:
        for d in self.directions:
            d.stop()
        self.client.close()
        self.upstream.close()
