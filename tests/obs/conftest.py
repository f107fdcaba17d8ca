"""An admin server on 127.0.0.1 (ports chosen by the OS) over a fake gateway."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from isthmus.obs.admin import start
from tests.e2e.harness import background
from tests.obs.fakes import FakeProvider


@dataclass
class Running:
    provider: FakeProvider
    admin: str
    status: str
    metrics: str


Serve = Callable[[FakeProvider], Running]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(provider)`` binds admin, status and metrics ports on 127.0.0.1."""
    with background() as bg, contextlib.ExitStack() as stack:

        def go(provider: FakeProvider) -> Running:
            any_port = ("127.0.0.1", 0)
            servers = bg.run(start(provider, admin=any_port, status=any_port, metrics=any_port))
            for server in servers:
                stack.callback(bg.loop.call_soon_threadsafe, server.close)
            admin, status, metrics = (
                "{}:{}".format(*s.sockets[0].getsockname()[:2]) for s in servers
            )
            return Running(provider, admin, status, metrics)

        yield go
