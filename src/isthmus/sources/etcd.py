"""Config from etcd, as Apache APISIX keeps its own: one resource per key under a prefix
(``PREFIX/Kind/namespace/name``, the YAML or JSON document as value), listed once and then
watched from the next revision.  The etcd revision of what we hold names the snapshot.

The watch keeps a local copy current; when etcd is unreachable the copy (and the snapshot
built from it) stays, and the watch resumes from the last revision it saw on whichever member
answers, or lists again when that revision has been compacted away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from isthmus.model.errors import ConfigError
from isthmus.model.yamlload import Document, read_documents
from isthmus.sources.base import Changed, SourceState, SourceUnavailable
from isthmus.sources.etcd_client import (
    EtcdClient,
    EtcdCompacted,
    EtcdError,
    EtcdUnavailable,
    KeyValue,
)

log = logging.getLogger("isthmus.etcd")
DEFAULT_PORT = 2379
DEFAULT_PREFIX = "/isthmus"


@dataclass(frozen=True)
class EtcdTarget:
    """``etcd://HOST[:PORT][,HOST[:PORT]...]/PREFIX``: the members to try, the key prefix."""

    endpoints: tuple[tuple[str, int], ...]
    prefix: str

    def describe(self) -> str:
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.endpoints)
        return f"etcd://{hosts}{self.prefix}"

    @property
    def key_prefix(self) -> str:
        """What every key of ours starts with (the slash keeps ``/isthmus2`` out)."""
        return self.prefix + "/"

    def key(self, kind: str, namespace: str, name: str) -> str:
        return f"{self.prefix}/{kind}/{namespace}/{name}"


def parse_target(spec: str) -> EtcdTarget:
    """Parse ``etcd://…``; ValueError says what is wrong."""
    rest = spec.removeprefix("etcd://")
    if rest == spec:
        raise ValueError(f"expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX, got {spec!r}")
    hosts, slash, path = rest.partition("/")
    prefix = "/" + path.strip("/") if slash and path.strip("/") else DEFAULT_PREFIX
    endpoints: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if item.startswith("["):  # [::1]:2379
            host, _, tail = item[1:].partition("]")
            port_text = tail.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError(f"{spec!r}: empty host in {hosts!r}")
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{spec!r}: bad port {port_text!r} for {host}") from None
        if not 0 < port < 65536:
            raise ValueError(f"{spec!r}: port {port} out of range")
        endpoints.append((host, port))
    return EtcdTarget(tuple(endpoints), prefix)


@dataclass(frozen=True, slots=True)
class _Entry:
    kv: KeyValue
    documents: tuple[Document, ...]
    errors: tuple[ConfigError, ...]


def _entry(kv: KeyValue) -> _Entry:
    where = f"etcd:{kv.key}"
    try:
        text = kv.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Entry(kv, (), (ConfigError(where, 0, None, "", f"not UTF-8 text: {exc}"),))
    docs, errors = read_documents(where, text)
    return _Entry(kv, tuple(docs), tuple(errors))


class EtcdSource:
    def __init__(self, target: EtcdTarget, client: EtcdClient | None = None) -> None:
        self.target = target
        self.client = client or EtcdClient(target.endpoints)
        self.retry_max = 2.0
        self._entries: dict[str, _Entry] = {}
        self._revision: int | None = None
        self._watching = False

    def describe(self) -> str:
        return self.target.describe()

    @property
    def revision(self) -> int | None:
        return self._revision

    async def current(self) -> SourceState:
        """While the watch runs, what it has seen; otherwise a fresh list."""
        if not self._watching or self._revision is None:
            try:
                await self._list()
            except EtcdError as exc:
                raise SourceUnavailable(str(exc)) from exc
        return self._state()

    def _state(self) -> SourceState:
        # Istio orders same-kind resources by creation time: the create revision is that here.
        entries = sorted(self._entries.values(), key=lambda e: (e.kv.create_revision, e.kv.key))
        return SourceState(
            tuple(d for e in entries for d in e.documents),
            tuple(err for e in entries for err in e.errors),
            str(self._revision),
        )

    async def _list(self) -> None:
        listing = await self.client.list_prefix(self.target.key_prefix)
        self._entries = {kv.key: _entry(kv) for kv in listing.kvs}
        self._revision = listing.revision

    async def watch(self, changed: Changed, stop: asyncio.Event) -> None:
        self._watching = True
        task = asyncio.ensure_future(self._follow(changed))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._watching = False
            for pending in (task, stopped):
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

    async def _follow(self, changed: Changed) -> None:
        """List if needed, then apply watch responses; on failure try the next member, and
        back off only after every member failed in a row."""
        delay = 0.1
        failures = 0
        down = False
        while True:
            try:
                if self._revision is None:
                    await self._list()
                    changed("etcd listed")
                assert self._revision is not None
                start = self._revision + 1
                async for batch in self.client.watch(self.target.key_prefix, start):
                    if not batch.events:
                        if down:
                            log.warning(
                                "%s: watching again from revision %d on %s",
                                self.describe(),
                                start,
                                self.client.endpoint,
                            )
                        failures, delay, down = 0, 0.1, False
                        continue
                    self._apply(batch.events, batch.revision)
                    changed(f"etcd revision {batch.revision}")
            except EtcdCompacted as exc:
                log.warning("%s: %s; listing again", self.describe(), exc)
                self._revision = None
                continue
            except EtcdError as exc:
                failures += 1
                if not down:
                    log.warning(
                        "%s: %s; serving revision %s, reconnecting",
                        self.describe(),
                        exc,
                        self._revision,
                    )
                    down = True
            if failures >= len(self.target.endpoints):
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    def _apply(self, events: tuple[tuple[KeyValue, bool], ...], revision: int) -> None:
        for kv, deleted in events:
            if deleted:
                self._entries.pop(kv.key, None)
            else:
                self._entries[kv.key] = _entry(kv)
        self._revision = max(revision, self._revision or 0)

    async def close(self) -> None:
        await self.client.close()


__all__ = ["EtcdSource", "EtcdTarget", "EtcdUnavailable", "parse_target"]
