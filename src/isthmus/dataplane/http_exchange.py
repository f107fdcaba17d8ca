"""One request's trip upstream: the request body channel and the response relay.

The downstream connection feeds request body chunks into :class:`RequestBody`; the request
task sends them upstream.  :class:`ResponseRelay` receives the upstream's response callbacks
and, once the task *commits* to a response (no more retries), writes it to the client as it
arrives, pausing the upstream when the client reads slowly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from isthmus.proto.http1 import ResponseHead

if TYPE_CHECKING:
    from isthmus.dataplane.http_upstream import UpstreamHttp

HIGH_WATER = 64 * 1024
REPLAY_LIMIT = 64 * 1024


class RequestBody:
    """Request body chunks between the parser and the request task, with backpressure.

    A bounded copy (``REPLAY_LIMIT``) is kept so a retry can send the body again; a longer
    body disables retries once it has started to flow.
    """

    def __init__(self, pause: object, resume: object, expected: bool) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.done = not expected
        self.failed = False
        self._pause = pause
        self._resume = resume
        self._paused = False
        self.replay: list[bytes] | None = []
        self._replay_size = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self.total += len(data)
        if self.replay is not None:
            self._replay_size += len(data)
            if self._replay_size <= REPLAY_LIMIT:
                self.replay.append(data)
            else:
                self.replay = None
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()  # type: ignore[operator]
        self._wake()

    def end(self) -> None:
        self.done = True
        self._wake()

    def fail(self) -> None:
        self.failed = True
        self.done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end of the body."""
        while not self._chunks:
            if self.done:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered <= HIGH_WATER // 2:
            self._paused = False
            self._resume()  # type: ignore[operator]
        return data

    @property
    def replayable(self) -> bool:
        return self.replay is not None and self.total == self._replay_size


class ResponseRelay:
    """The :class:`~isthmus.dataplane.http_upstream.Exchange` of one attempt."""

    def __init__(
        self, upstream: UpstreamHttp, downstream: asyncio.Transport, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.upstream = upstream
        self.downstream = downstream
        self.head_future: asyncio.Future[ResponseHead] = loop.create_future()
        self.done: asyncio.Future[bool] = loop.create_future()
        self.committed = False
        self.chunked_out = False
        self.pending: list[bytes] = []
        self.ended = False
        self.rest = b""
        self.bytes_out = 0
        self._writable: asyncio.Event | None = None  # made only when an upload stalls
        self.interim: list[ResponseHead] = []

    # upstream callbacks ---------------------------------------------------------------------
    def on_response_head(self, head: ResponseHead) -> None:
        if 100 <= head.status < 200 and head.status != 101:
            self.interim.append(head)
            return
        if not self.head_future.done():
            self.head_future.set_result(head)

    def on_response_body(self, data: bytes) -> None:
        if self.committed:
            self._write_body(data)
        else:
            self.pending.append(data)

    def on_response_end(self, rest: bytes) -> None:
        self.ended = True
        self.rest = rest
        if self.committed:
            self._finish()

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        error = exc or ConnectionResetError("upstream closed the connection")
        if not self.head_future.done():
            self.head_future.set_exception(error)
        elif not self.done.done():
            self.done.set_result(False)

    @property
    def writable(self) -> asyncio.Event:
        if self._writable is None:
            self._writable = asyncio.Event()
            self._writable.set()
        return self._writable

    def on_upstream_writable(self, writable: bool) -> None:
        if writable:
            self.writable.set()
        else:
            self.writable.clear()

    # commit -----------------------------------------------------------------------------------
    def commit(self, head_bytes: bytes, chunked: bool, has_body: bool) -> None:
        """Write the response head and whatever body already arrived; stream the rest."""
        self.committed = True
        self.chunked_out = chunked
        # One write for the head, what body already arrived and (if complete) the last chunk:
        # each write is a send(2), and most responses arrive whole in one read.
        parts = [head_bytes]
        if has_body:
            for data in self.pending:
                if data:
                    self.bytes_out += len(data)
                    parts.append(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
        self.pending.clear()
        if self.ended and chunked:
            parts.append(b"0\r\n\r\n")
        if self.downstream.is_closing():  # the client left while the response was on its way
            if not self.done.done():
                self.done.set_result(False)
            return
        self.downstream.write(b"".join(parts) if len(parts) > 1 else head_bytes)
        if self.ended and not self.done.done():
            self.done.set_result(True)

    def _write_body(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_out += len(data)
        if self.chunked_out:
            self.downstream.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.downstream.write(data)

    def _finish(self) -> None:
        if self.chunked_out:
            self.downstream.write(b"0\r\n\r\n")
        if not self.done.done():
            self.done.set_result(True)
