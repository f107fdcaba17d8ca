"""Deadlines that arrive in the order they fall due, watched by one timer.

When every item gets the same timeout (all connections of a gateway share its request headers
timeout and its stream idle timeout), the order items arrive in is the order they expire.
One event-loop timer, armed for the oldest item, then serves them all: adding and removing
an item is a dict operation, where a timer per item costs ``call_later`` + ``cancel`` (2.4 µs
measured with uvloop, once per accepted connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: Expire items this close to their deadline (the loop's clock has millisecond resolution):
#: better a millisecond early than a wake-up that finds nothing due.
_SLACK = 0.001


class DeadlineQueue(Generic[K]):
    """Items with deadlines on ``loop.time()``, each added with the same timeout (so in
    deadline order); ``expire(item)`` is called for each once its deadline passes, unless it
    was discarded first."""

    def __init__(self, expire: Callable[[K], None]) -> None:
        self._items: dict[K, float] = {}
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: K, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        """Watch ``item`` until ``deadline``; an item already watched moves to the end."""
        items = self._items
        if item in items:
            del items[item]
        items[item] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._sweep, loop)

    def discard(self, item: K) -> None:
        if self._items:
            self._items.pop(item, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        items = self._items
        now = loop.time() + _SLACK
        while items:
            item, deadline = next(iter(items.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._sweep, loop)
                return
            del items[item]
            self._expire(item)
