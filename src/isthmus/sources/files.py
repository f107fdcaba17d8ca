"""Config from YAML files and directories read like ``kubectl apply -f``, watched."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import watchfiles

from isthmus.model.yamlload import YAML_SUFFIXES, load_documents
from isthmus.sources.base import Changed, SourceState


class FileSource:
    def __init__(self, paths: Sequence[str], quiet_ms: int = 100, max_delay_ms: int = 1000) -> None:
        self.paths = list(paths)
        self.quiet_ms = quiet_ms
        self.max_delay_ms = max_delay_ms

    def describe(self) -> str:
        return "files " + ", ".join(self.paths)

    def read(self) -> SourceState:
        docs, errors = load_documents(self.paths)
        return SourceState(tuple(docs), tuple(errors))

    async def current(self) -> SourceState:
        return await asyncio.to_thread(self.read)

    async def watch(self, changed: Changed, stop: asyncio.Event) -> None:
        roots = sorted(
            {p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in self.paths}
        )
        files = {os.path.abspath(p) for p in self.paths if not os.path.isdir(p)}
        dirs = [os.path.abspath(p) for p in self.paths if os.path.isdir(p)]

        def relevant(_change: watchfiles.Change, path: str) -> bool:
            path = os.path.abspath(path)
            if path in files or any(path.startswith(d + os.sep) for d in dirs):
                return path.endswith(YAML_SUFFIXES) or path in files
            return False

        # A change made while the watch was being set up would be missed: look once more
        # shortly after it starts (an unchanged config is a no-op).
        catch_up = asyncio.get_running_loop().call_later(0.5, changed, "files changed")
        try:
            async for _changes in watchfiles.awatch(
                *roots,
                watch_filter=relevant,
                debounce=self.max_delay_ms,
                step=self.quiet_ms,
                stop_event=stop,
                recursive=True,
            ):
                changed("files changed")
        finally:
            catch_up.cancel()

    async def close(self) -> None:
        return None
