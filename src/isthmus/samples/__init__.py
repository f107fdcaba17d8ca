"""Small sample backends, like Istio's ``samples/`` (tcp-echo, an HTTP echo), for demos and tests.

They only depend on the stdlib (and httptools for HTTP), so the CLI, the demo and the end-to-end
tests can start them in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run_forever(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main()`` on uvloop when installed, until it returns or Ctrl-C."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
