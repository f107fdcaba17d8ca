"""Live config: watch the sources, debounce, build, publish — or reject and keep serving.

A burst of file writes becomes one reload (watchfiles groups changes: ``quiet_ms`` of calm,
at most ``max_delay_ms`` in all).  SIGHUP forces a reload.  A build that fails to load,
validate or bind is rejected whole and recorded; the last good snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import watchfiles

from isthmus.control.build import Build, build
from isthmus.dataplane.server import BindError, Gateway
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


@dataclass
class Reloader:
    paths: Sequence[str]
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
        """Reload on every change under ``paths`` until ``stop`` is set."""
        roots = sorted(
            {p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in self.paths}
        )
        files = {os.path.abspath(p) for p in self.paths if not os.path.isdir(p)}
        dirs = [os.path.abspath(p) for p in self.paths if os.path.isdir(p)]

        def relevant(_change: watchfiles.Change, path: str) -> bool:
            path = os.path.abspath(path)
            if path in files or any(path.startswith(d + os.sep) for d in dirs):
                return path.endswith((".yaml", ".yml", ".json")) or path in files
            return False

        # A change made while the watch was being set up would be missed: look once more
        # shortly after it starts (an unchanged config is a no-op).
        catch_up = asyncio.get_running_loop().call_later(
            0.5, lambda: asyncio.ensure_future(self.reload("files changed"))
        )
        try:
            await self._watch(roots, relevant, stop)
        finally:
            catch_up.cancel()

    async def _watch(
        self,
        roots: list[str],
        relevant: Callable[[watchfiles.Change, str], bool],
        stop: asyncio.Event,
    ) -> None:
        async for _changes in watchfiles.awatch(
            *roots,
            watch_filter=relevant,
            debounce=self.max_delay_ms,
            step=self.quiet_ms,
            stop_event=stop,
            recursive=True,
        ):
            await self.reload("files changed")

    async def reload(self, reason: str) -> bool:
        """Build and publish; True when the new snapshot serves."""
        async with self._lock:
            result = await asyncio.to_thread(build, self.paths, self.identity, None, mesh=self.mesh)
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
