"""DeadlineQueue: items expire in order, once, unless discarded or moved on."""

from __future__ import annotations

import asyncio

from isthmus.dataplane.deadlines import DeadlineQueue


def test_items_expire_in_order_unless_discarded_or_moved() -> None:
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        expired: list[str] = []
        queue: DeadlineQueue[str] = DeadlineQueue(expired.append)
        now = loop.time()
        for i, name in enumerate(("a", "b", "c", "d")):
            queue.add(name, now + 0.05 + 0.01 * i, loop)
        queue.discard("b")
        queue.add("a", now + 0.2, loop)  # "a" moved on: it goes to the end
        for _ in range(100):  # bounded: 5 s at most
            if not queue:
                break
            await asyncio.sleep(0.05)
        return expired

    assert asyncio.run(run()) == ["c", "d", "a"]
