"""What every config source offers the control plane."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from isthmus.model.errors import ConfigError
from isthmus.model.yamlload import Document


class SourceUnavailable(Exception):
    """The store cannot be read right now (the last good snapshot keeps serving)."""


@dataclass(frozen=True)
class SourceState:
    """The whole config as a source sees it at one moment.

    ``revision`` is the store's own version of this state (an etcd revision, a Kubernetes
    resourceVersion); None means the snapshot is versioned by a hash of its content.
    """

    documents: tuple[Document, ...]
    errors: tuple[ConfigError, ...] = ()
    revision: str | None = None


Changed = Callable[[str], None]


class ConfigSource(Protocol):
    def describe(self) -> str:
        """Where the config comes from, for messages (``files examples/``, ``etcd://…``)."""
        ...

    async def current(self) -> SourceState:
        """The whole current config; raises SourceUnavailable when it cannot be read."""
        ...

    async def watch(self, changed: Changed, stop: asyncio.Event) -> None:
        """Call ``changed(reason)`` after each change until ``stop`` is set (the caller
        debounces).  Reconnects by itself; returns only when stopped."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
