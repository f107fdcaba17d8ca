"""A store source's state handed from the ``--workers`` supervisor to its workers.

The supervisor alone talks to the store; each state it accepts is written here (atomically,
by rename) before it tells the workers to reload, so every worker serves exactly what the
supervisor validated, under the store's revision.  The file is pickled: it lives in a
directory only this user can read, is written and read by the same program, and keeps each
document's lines and types as parsed (a YAML date stays a date), which JSON would not.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import tempfile

from isthmus.sources.base import Changed, SourceState, SourceUnavailable

SPEC_PREFIX = "state:"


def write_state(path: str, description: str, state: SourceState) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state-")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((description, state), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_state(path: str) -> tuple[str, SourceState]:
    with open(path, "rb") as fh:
        description, state = pickle.load(fh)  # our own file: see the docstring
    if not isinstance(state, SourceState):
        raise SourceUnavailable(f"{path}: not a config state")
    return str(description), state


class StateFileSource:
    """A worker's view of its supervisor's store (reloads come over the control channel)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._description = "supervisor state " + path

    def describe(self) -> str:
        return self._description

    async def current(self) -> SourceState:
        try:
            self._description, state = await asyncio.to_thread(read_state, self.path)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise SourceUnavailable(f"{self.path}: {exc}") from exc
        return state

    async def watch(self, changed: Changed, stop: asyncio.Event) -> None:
        await stop.wait()  # the supervisor says when to reload

    async def close(self) -> None:
        return None
