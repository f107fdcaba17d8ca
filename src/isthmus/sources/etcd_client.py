"""etcd v3 over aetcd, typed, across several members: list a prefix, watch it, write in one
transaction.  A member that fails is left for the next one, each attempt on a fresh channel
(gRPC's own reconnect backoff would otherwise keep a channel failing fast for up to two
minutes after its member is back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions as aetcd_errors
from aetcd import rpc

T = TypeVar("T")

# Ask members to refuse requests (and end watches) while they have no leader, so a member cut
# off from its quorum hands us over to the next one instead of serving a frozen view.
REQUIRE_LEADER = (("hasleader", "true"),)
CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,  # a dead peer behind a silent network is found too
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
}
_UNAVAILABLE = (
    aetcd_errors.ConnectionFailedError,
    aetcd_errors.ConnectionTimeoutError,
    aetcd_errors.InternalError,
    aetcd_errors.WatchTimeoutError,
)


class EtcdError(Exception):
    """etcd refused a request (too many operations in a transaction, a value too large)."""


class EtcdUnavailable(EtcdError):
    """No member answered."""


class EtcdCompacted(EtcdError):
    """The revision a watch asked for is gone; the caller must list again."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted up to {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Listing:
    revision: int
    kvs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """One watch response: every event of one or more whole revisions, in order, each as
    (key-value, deleted).  The first batch of a watch has no events: it says the watch is
    established (``revision`` is then the store's)."""

    revision: int
    events: tuple[tuple[KeyValue, bool], ...]


@dataclass(frozen=True, slots=True)
class Op:
    """A transaction step: put ``value`` at ``key``, or delete it (``value`` None), provided
    the key's mod revision is still ``expect_mod_revision`` (0: the key does not exist)."""

    key: str
    value: bytes | None
    expect_mod_revision: int


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range holding every key that starts with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        kv.key.decode("utf-8", "replace"), bytes(kv.value), kv.create_revision, kv.mod_revision
    )


class EtcdClient:
    def __init__(self, endpoints: Sequence[tuple[str, int]], timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._index = 0
        self._client: aetcd.Client | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.endpoints[self._index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def _connected(self) -> aetcd.Client:
        if self._client is None:
            host, port = self.endpoints[self._index]
            client = aetcd.Client(host, port, timeout=self.timeout, options=CHANNEL_OPTIONS)
            client.metadata = REQUIRE_LEADER  # kept by connect() when there are no credentials
            self._client = client
        await self._client.connect()
        return self._client

    async def _next_member(self) -> None:
        client, self._client = self._client, None
        self._index = (self._index + 1) % len(self.endpoints)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def _call(self, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """``op`` on the current member, then on each other one until one answers."""
        failures: list[str] = []
        for _ in self.endpoints:
            where = self.endpoint
            try:
                return await op(await self._connected())
            except _UNAVAILABLE as exc:
                failures.append(f"{where}: {exc}")
            except aetcd_errors.ClientError as exc:
                raise EtcdError(f"{where}: {exc}") from exc
            await self._next_member()
        raise EtcdUnavailable("; ".join(failures))

    async def list_prefix(self, prefix: str) -> Listing:
        async def get(client: aetcd.Client) -> Listing:
            result = await client.get_prefix(prefix.encode())
            return Listing(result.header.revision, tuple(_kv(kv) for kv in result))

        return await self._call(get)

    async def txn(self, ops: Sequence[Op], unchanged_since: tuple[str, int] | None = None) -> bool:
        """Apply every op in one transaction; False (nothing written) if any op's key changed
        since it was read, or, with ``unchanged_since=(prefix, revision)``, if any key under
        ``prefix`` was written after ``revision``."""

        async def run(client: aetcd.Client) -> bool:
            tx = client.transactions
            compare = [tx.mod(op.key.encode()) == op.expect_mod_revision for op in ops]
            if unchanged_since is not None:
                key = unchanged_since[0].encode()
                compare.append(tx.mod(key, range_end=prefix_end(key)) < unchanged_since[1] + 1)
            success = [
                tx.delete(op.key.encode())
                if op.value is None
                else tx.put(op.key.encode(), op.value)
                for op in ops
            ]
            succeeded, _ = await client.transaction(compare=compare, success=success, failure=[])
            return bool(succeeded)

        return await self._call(run)

    async def compact(self, revision: int) -> None:
        async def run(client: aetcd.Client) -> None:
            await client.compact(revision, physical=True)

        await self._call(run)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchBatch]:
        """Every change under ``prefix`` from ``start_revision`` on, a response at a time.

        aetcd's own watch hands out single events and drops the response boundary; one
        response carries a whole transaction, so this reads the stream itself (aetcd's
        generated stub, aetcd's channel) to apply a transaction at once.
        """
        where = self.endpoint
        try:
            client = await self._connected()
        except _UNAVAILABLE as exc:
            await self._next_member()
            raise EtcdUnavailable(f"{where}: {exc}") from exc
        key = prefix.encode()
        create = rpc.WatchCreateRequest(
            key=key, range_end=prefix_end(key), start_revision=start_revision
        )
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await done.wait()  # the stream stays open while we read

        call = rpc.WatchStub(client.channel).Watch(requests(), metadata=client.metadata)
        try:
            async for response in call:
                if response.compact_revision:
                    raise EtcdCompacted(response.compact_revision)
                if response.canceled:
                    reason = response.cancel_reason or "canceled by the server"
                    raise EtcdUnavailable(f"{where}: watch {reason}")
                if response.created:
                    yield WatchBatch(response.header.revision, ())  # watching now
                elif response.events:
                    events = tuple(
                        (_kv(ev.kv), ev.type == rpc.Event.EventType.DELETE)
                        for ev in response.events
                    )
                    yield WatchBatch(max(kv.mod_revision for kv, _ in events), events)
        except rpc.AioRpcError as exc:
            await self._next_member()
            raise EtcdUnavailable(f"{where}: {exc.details() or exc.code().name}") from exc
        finally:
            done.set()
            call.cancel()
        await self._next_member()
        raise EtcdUnavailable(f"{where}: watch stream ended")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
