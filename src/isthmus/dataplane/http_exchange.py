"""The request body channel: the downstream connection feeds body chunks into
:class:`RequestBody`; the forward's sender Task sends them upstream."""

from __future__ import annotations

import asyncio
from collections import deque

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
        if self.done:
            return
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


NO_BODY = RequestBody(None, None, expected=False)
"""The body of every request without one (shared: it is done from the start)."""
