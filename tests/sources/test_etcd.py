"""The etcd source and writer against a real 3-member cluster: list, watch a transaction
whole, name keys in errors, relist after compaction, fail over to the next member, and refuse
a write when the store moved since it was read."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.sources.base import SourceState, SourceUnavailable
from isthmus.sources.etcd import EtcdSource, EtcdTarget, parse_target
from isthmus.sources.etcd_apply import Resource, commit, plan_apply, plan_delete
from isthmus.sources.etcd_client import EtcdClient, Op
from isthmus.sources.statefile import StateFileSource, write_state
from tests.e2e.harness import closed_port
from tests.etcd_cluster import EtcdCluster, etcd_cluster

GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: %s, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: %d, name: tcp, protocol: TCP}
    hosts: ["*"]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with etcd_cluster(tmp_path_factory.mktemp("etcd")) as running:
        yield running


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def target(cluster: EtcdCluster, prefix: str) -> EtcdTarget:
    return parse_target(cluster.source(prefix))


def names(state: SourceState) -> list[str]:
    return [d.value["metadata"]["name"] for d in state.documents]


def test_parse_target() -> None:
    t = parse_target("etcd://a:1,b,[::1]:3/fleet/one/")
    assert t.endpoints == (("a", 1), ("b", 2379), ("::1", 3))
    assert t.prefix == "/fleet/one"
    assert t.key("Gateway", "default", "gw") == "/fleet/one/Gateway/default/gw"
    assert t.describe() == "etcd://a:1,b:2379,[::1]:3/fleet/one"
    assert parse_target("etcd://h:2379").prefix == "/isthmus"
    for bad in ("etcd://h:x/p", "etcd://:1/p", "etcd://h:70000/p", "http://h/p"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_list_then_a_transaction_arrives_whole(cluster: EtcdCluster) -> None:
    t = target(cluster, "/t-watch")

    async def scenario() -> None:
        client = EtcdClient(t.endpoints)
        await client.txn([Op(t.key("Gateway", "default", "a"), (GATEWAY % ("a", 1)).encode(), 0)])
        source = EtcdSource(t)
        first = await source.current()
        assert names(first) == ["a"] and first.revision == str(source.revision)
        reasons: list[str] = []
        seen: list[SourceState] = []
        got = asyncio.Event()

        def changed(reason: str) -> None:
            reasons.append(reason)
            seen.append(source._state())  # what a reload at this instant would build
            got.set()

        stop = asyncio.Event()
        watcher = asyncio.ensure_future(source.watch(changed, stop))
        ops = [
            Op(t.key("Gateway", "default", n), (GATEWAY % (n, p)).encode(), 0)
            for n, p in (("b", 2), ("c", 3))
        ]
        held = await client.list_prefix(t.key_prefix)
        ops.append(Op(t.key("Gateway", "default", "a"), None, held.kvs[0].mod_revision))
        assert await client.txn(ops)
        listing = await client.list_prefix(t.key_prefix)
        await asyncio.wait_for(got.wait(), 10)
        stop.set()
        await watcher
        await client.close()
        await source.close()
        # one response, one callback: never a state with half of the transaction
        assert len(reasons) == 1, reasons
        assert sorted(names(seen[0])) == ["b", "c"]
        assert seen[0].revision == str(listing.revision)

    run(scenario())


def test_errors_name_the_key_and_line(cluster: EtcdCluster) -> None:
    t = target(cluster, "/t-errors")

    async def scenario() -> SourceState:
        client = EtcdClient(t.endpoints)
        key = t.key("Gateway", "default", "bad")
        await client.txn([Op(key, b"kind: Gateway\nmetadata: {name: x\n  oops: [\n", 0)])
        await client.close()
        source = EtcdSource(t)
        try:
            return await source.current()
        finally:
            await source.close()

    state = run(scenario())
    assert state.documents == ()
    assert len(state.errors) == 1
    assert str(state.errors[0]).startswith("etcd:/t-errors/Gateway/default/bad:"), state.errors


def test_compacted_revision_means_list_again(cluster: EtcdCluster) -> None:
    t = target(cluster, "/t-compact")

    async def scenario() -> None:
        client = EtcdClient(t.endpoints)
        await client.txn([Op(t.key("Gateway", "default", "a"), (GATEWAY % ("a", 1)).encode(), 0)])
        source = EtcdSource(t)
        listed = await source.current()
        # while nothing watches, the store moves on and its history is compacted away
        for n, p in (("b", 2), ("c", 3)):
            await client.txn([Op(t.key("Gateway", "default", n), (GATEWAY % (n, p)).encode(), 0)])
        now = (await client.list_prefix(t.key_prefix)).revision
        await client.compact(now)
        reasons: list[str] = []
        got = asyncio.Event()

        def changed(reason: str) -> None:
            reasons.append(reason)
            got.set()

        stop = asyncio.Event()
        watcher = asyncio.ensure_future(source.watch(changed, stop))
        await asyncio.wait_for(got.wait(), 10)
        relisted = await source.current()
        stop.set()
        await watcher
        await client.close()
        await source.close()
        assert names(listed) == ["a"]
        assert reasons == ["etcd listed"]
        assert names(relisted) == ["a", "b", "c"] and relisted.revision == str(now)

    run(scenario())


def test_a_dead_member_is_skipped(cluster: EtcdCluster) -> None:
    t = target(cluster, "/t-failover")
    dead = EtcdTarget((("127.0.0.1", closed_port()), *t.endpoints), t.prefix)

    async def scenario() -> None:
        client = EtcdClient(t.endpoints)
        await client.txn([Op(t.key("Gateway", "default", "a"), (GATEWAY % ("a", 1)).encode(), 0)])
        await client.close()
        source = EtcdSource(dead)
        state = await source.current()
        assert names(state) == ["a"]
        await source.close()
        nowhere = EtcdSource(EtcdTarget((("127.0.0.1", closed_port()),), t.prefix))
        with pytest.raises(SourceUnavailable):
            await nowhere.current()
        await nowhere.close()

    run(scenario())


def test_a_write_is_refused_when_the_store_moved(cluster: EtcdCluster) -> None:
    t = target(cluster, "/t-race")
    gw = Resource("Gateway", "networking.istio.io/v1", "default", "gw", {"kind": "Gateway"})
    other = Resource("Gateway", "networking.istio.io/v1", "default", "other", {"kind": "Gateway"})

    async def scenario() -> None:
        client = EtcdClient(t.endpoints)
        before = await client.list_prefix(t.key_prefix)
        changes = plan_apply(t, [gw], before)
        assert [c.outcome for c in changes] == ["created"]
        # someone else writes under the prefix after we read: our transaction must not land
        await client.txn([Op(t.key("Gateway", "default", "other"), b"x: 1\n", 0)])
        assert not await commit(client, t, before, changes)
        fresh = await client.list_prefix(t.key_prefix)
        assert await commit(client, t, fresh, plan_apply(t, [gw], fresh))
        again = await client.list_prefix(t.key_prefix)
        assert [c.outcome for c in plan_apply(t, [gw], again)] == ["unchanged"]
        assert [c.outcome for c in plan_delete(t, [gw, other], again)] == ["deleted", "deleted"]
        await client.close()

    run(scenario())
    assert gw.display == "gateway.networking.istio.io/gw"
    assert Resource("Service", "v1", "default", "app", {}).display == "service/app"


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "state")
    source = StateFileSource(path)
    with pytest.raises(SourceUnavailable):
        run(source.current())
    from isthmus.model.yamlload import read_documents

    docs, _ = read_documents("etcd:/p/Gateway/default/a", GATEWAY % ("a", 1))
    write_state(path, "etcd://h:1/p", SourceState(tuple(docs), (), "42"))
    state = run(source.current())
    assert state.revision == "42" and names(state) == ["a"]
    assert state.documents[0].file == "etcd:/p/Gateway/default/a"
    assert source.describe() == "etcd://h:1/p"
