"""What both relay engines share: the per-connection stats, the timers and how a relay ends.

Kept apart from :mod:`isthmus.dataplane.relay` so the splice engine and the transport engine can
both build on it without importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Literal

Mode = Literal["splice", "protocol"]
EndReason = Literal[
    "eof", "idle_timeout", "max_duration", "client_reset", "upstream_reset", "cancelled"
]
Role = Literal["client", "upstream"]

DEFAULT_BUFFER_SIZE = 32 * 1024
"""Per-direction buffer bound: Envoy's edge default per-connection buffer."""

_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class RelayStats:
    """What one relayed connection did, for access logs and ``istio_tcp_*`` metrics.

    Counters are live while the relay runs.  ``client_to_upstream`` counts bytes read from the
    client (Istio's received bytes), ``upstream_to_client`` bytes read from the upstream (sent
    bytes).  ``peak_buffered_*`` is the most the relay held at once in that direction, which is
    what the buffer bound promises.  ``end_reason`` is the first cause of the end.
    """

    mode: Mode = "protocol"
    client_to_upstream: int = 0
    upstream_to_client: int = 0
    peak_buffered_to_upstream: int = 0
    peak_buffered_to_client: int = 0
    started: float = 0.0
    ended: float | None = None
    end_reason: EndReason | None = None
    error: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


def set_reset_on_close(sock: socket.socket) -> None:
    """Make ``close()`` send RST (SO_LINGER 0): how a reset is passed on to the other side."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def reset_reason(role: Role) -> EndReason:
    return "client_reset" if role == "client" else "upstream_reset"


class RelayEngine:
    """Base of both engines: the outcome future, idle/duration timers and the stats.

    The idle timer is not re-armed per chunk: data paths only stamp ``last_active`` and the
    timer, when it fires, re-arms itself for the remaining time.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stats: RelayStats,
        idle_timeout: float | None,
        max_duration: float | None,
    ) -> None:
        self.loop = loop
        self.stats = stats
        self.done: asyncio.Future[None] = loop.create_future()
        self.ending = False
        self.idle_timeout = idle_timeout
        self.last_active = stats.started = loop.time()
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        if idle_timeout is not None:
            self._idle = loop.call_later(idle_timeout, self._check_idle)
        if max_duration is not None:
            self._deadline = loop.call_later(max_duration, self.abort, "max_duration", None, None)

    def _check_idle(self) -> None:
        assert self.idle_timeout is not None
        idle_for = self.loop.time() - self.last_active
        if idle_for >= self.idle_timeout:
            self.abort("idle_timeout", None, None)
        else:
            self._idle = self.loop.call_later(self.idle_timeout - idle_for, self._check_idle)

    def record_end(self, reason: EndReason, error: str | None) -> None:
        """The first cause wins: a reset seen after a timeout fired is its consequence."""
        if self.stats.end_reason is None:
            self.stats.end_reason = reason
            self.stats.error = error
        for timer in (self._idle, self._deadline):
            if timer is not None:
                timer.cancel()
        self._idle = self._deadline = None

    def finish(self) -> None:
        self.record_end("eof", None)
        if self.stats.ended is None:
            self.stats.ended = self.loop.time()
        if not self.done.done():
            self.done.set_result(None)

    def abort(self, reason: EndReason, culprit: Role | None, error: str | None) -> None:
        """Close both sides now; the side that is not ``culprit`` gets a reset if one is given."""
        raise NotImplementedError

    async def wait(self) -> RelayStats:
        try:
            await self.done
        except asyncio.CancelledError:
            self.abort("cancelled", None, None)
            self.finish()
            raise
        return self.stats
