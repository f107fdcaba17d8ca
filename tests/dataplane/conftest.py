"""Run each async test on uvloop (when installed) and on the default asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None

LOOPS = ["uvloop", "asyncio"] if uvloop is not None else ["asyncio"]

Run = Callable[..., Any]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Iterator[Run]:
    """``run(coro, timeout=30)``: run a coroutine to completion, bounded in time."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:

        def go(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
            return runner.run(asyncio.wait_for(coro, timeout))

        yield go
