"""Live config: watch the sources, debounce, build, publish — or reject and keep serving.

A burst of changes becomes one reload (``quiet_ms`` of calm, at most ``max_delay_ms`` after
the first change), whatever the source: files, the Kubernetes API or etcd.  SIGHUP forces
a reload.  A build that fails to load, validate or bind is rejected whole and recorded;
the last good snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from isthmus.control.build import Build, build_state
from isthmus.dataplane.server import BindError, Gateway
from isthmus.sources.base import ConfigSource, SourceUnavailable
from isthmus.translate.identity import GatewayIdentity


@dataclass(frozen=True)
class Rejection:
    """An update that was not applied: when, why, and which version kept serving."""

    time: float
    problems: tuple[str, ...]
    serving_version: str


@dataclass
class ConfigState:
    """What the admin API and metrics report about config changes."""

    version: str
    last_good_time: float = field(default_factory=time.time)
    reloads_ok: int = 0
    reloads_rejected: int = 0
    rejections: deque[Rejection] = field(default_factory=lambda: deque(maxlen=20))

    @property
    def last_rejection(self) -> Rejection | None:
        return self.rejections[-1] if self.rejections else None


Report = Callable[[list[str]], None]
_pending: set[asyncio.Future[bool]] = set()


class Debounce:
    """Call ``fire(reason)`` once changes have been quiet ``quiet_ms``, and never later than
    ``max_delay_ms`` after the first change of a burst."""

    def __init__(self, quiet_ms: int, max_delay_ms: int, fire: Callable[[str], None]) -> None:
        self.quiet = quiet_ms / 1000
        self.max_delay = max(max_delay_ms, quiet_ms) / 1000
        self.fire = fire
        self._first = 0.0
        self._reason = ""
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, reason: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._timer is None:
            self._first = now
        else:
            self._timer.cancel()
        self._reason = reason
        due = min(now + self.quiet, self._first + self.max_delay)
        self._timer = loop.call_at(due, self._due)

    def _due(self) -> None:
        self._timer = None
        self.fire(self._reason)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass
class Reloader:
    source: ConfigSource
    identity: GatewayIdentity
    gateway: Gateway
    state: ConfigState
    report: Report
    summarize: Callable[[Build], list[str]]
    drain_seconds: float = 5.0
    quiet_ms: int = 100
    max_delay_ms: int = 1000
    mesh: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload after changes in the source (debounced) until ``stop`` is set."""
        debounce = Debounce(self.quiet_ms, self.max_delay_ms, self._reload_soon)
        try:
            await self.source.watch(debounce.changed, stop)
        finally:
            debounce.cancel()

    def _reload_soon(self, reason: str) -> None:
        task = asyncio.ensure_future(self.reload(reason))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def reload(self, reason: str) -> bool:
        """Build and publish; True when the new snapshot serves."""
        async with self._lock:
            try:
                current = await self.source.current()
            except SourceUnavailable as exc:
                return self._reject([f"{self.source.describe()}: {exc}"])
            result = await asyncio.to_thread(
                build_state, current, self.identity, None, mesh=self.mesh
            )
            if result.snapshot is None:
                return self._reject(result.problems())
            if result.snapshot.version == self.gateway.snapshot.version:
                return True  # same content (a touch, a rewrite with no change)
            try:
                await self.gateway.apply(result.snapshot, self.drain_seconds)
            except BindError as exc:
                return self._reject([str(exc)])
            self.state.version = result.snapshot.version
            self.state.last_good_time = time.time()
            self.state.reloads_ok += 1
            self.report(
                [
                    f"reloaded ({reason}): {line}" if i == 0 else line
                    for i, line in enumerate(self.summarize(result))
                ]
            )
            return True

    def _reject(self, problems: list[str]) -> bool:
        rejection = Rejection(time.time(), tuple(problems), self.gateway.snapshot.version)
        self.state.rejections.append(rejection)
        self.state.reloads_rejected += 1
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rejection.time))
        self.report(
            [
                f"rejected update at {stamp}; still serving config {rejection.serving_version}:",
                *(f"  {p}" for p in problems),
            ]
        )
        return False


def install_sighup(reloader: Reloader) -> Callable[[], None]:
    """SIGHUP forces a reload; returns the function that removes the handler."""
    import signal

    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = asyncio.ensure_future(reloader.reload("SIGHUP"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)

    def remove() -> None:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGHUP)

    return remove
