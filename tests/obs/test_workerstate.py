"""Workers' endpoint state: published from real cluster states, merged for the supervisor."""

from __future__ import annotations

import dataclasses
from typing import cast

from isthmus.dataplane.balancer import ClusterState
from isthmus.obs.status import cluster_statuses
from isthmus.obs.workerstate import WorkerState, endpoint_samples, merge_clusters
from isthmus.snapshot.types import Snapshot
from tests.obs.fakes import tcp_echo_snapshot


def two_endpoints() -> Snapshot:
    """tcp-echo with a second endpoint in its first cluster."""
    snapshot = tcp_echo_snapshot()
    name, cluster = next(iter(snapshot.clusters.items()))
    extra = dataclasses.replace(cluster.endpoints[0], port=cluster.endpoints[0].port + 100)
    clusters = dict(snapshot.clusters)
    clusters[name] = dataclasses.replace(cluster, endpoints=(*cluster.endpoints, extra))
    return dataclasses.replace(snapshot, clusters=clusters)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def worker(pid: int, states: list[ClusterState]) -> WorkerState:
    return cast(WorkerState, {"pid": pid, "endpoints": endpoint_samples(states)})


def test_counts_add_up_and_an_endpoint_ejected_by_one_worker_is_ejected() -> None:
    snapshot = two_endpoints()
    name, cluster = next(iter(snapshot.clusters.items()))
    clock = Clock()
    first, second = ClusterState(cluster, clock=clock), ClusterState(cluster, clock=clock)
    bad = first.endpoints[0]
    first.acquire(bad)
    first.http_status(bad, 500)  # consecutive_5xx=1: ejected in the first worker only
    second.acquire(second.endpoints[0])
    second.connection_opened(second.endpoints[1])
    states = [worker(1, [first]), worker(2, [second])]

    merged = merge_clusters(snapshot, states, now=clock.now)[name]
    by_key = {ep.key: ep for ep in merged.endpoints}
    assert by_key[bad.key].active_requests == 2
    assert merged.is_ejected(by_key[bad.key])
    assert by_key[bad.key].outlier.times_ejected == 1
    assert not merged.is_ejected(by_key[second.endpoints[1].key])
    assert merged.active_connections == 1

    statuses = cluster_statuses(snapshot, merge_clusters(snapshot, states, now=clock.now).get)
    hosts = {
        "{address}:{port_value}".format(**h["address"]["socket_address"]): h
        for c in statuses
        if c["name"] == name
        for h in c["host_statuses"]
    }
    assert hosts[bad.key]["health_status"]["failed_outlier_check"] is True
    assert hosts[second.endpoints[1].key]["health_status"]["failed_outlier_check"] is False

    # once the ejection time has passed, the supervisor's clock un-ejects it
    later = merge_clusters(snapshot, states, now=clock.now + 3600)[name]
    assert not any(later.is_ejected(ep) for ep in later.endpoints)


def test_endpoints_the_snapshot_lacks_are_left_out() -> None:
    snapshot = tcp_echo_snapshot()
    name = next(iter(snapshot.clusters))
    state = cast(
        WorkerState,
        {
            "pid": 1,
            "endpoints": {
                name: [
                    {
                        "key": "10.9.9.9:1",
                        "rq_active": 5,
                        "cx_active": 5,
                        "ejected_until": None,
                        "times_ejected": 0,
                        "consecutive_5xx": 0,
                        "consecutive_gateway_errors": 0,
                        "consecutive_local_origin_failures": 0,
                    }
                ],
                "outbound|1||gone.default.svc.cluster.local": [],
            },
        },
    )
    merged = merge_clusters(snapshot, [state])
    assert set(merged) == set(snapshot.clusters)
    assert all(ep.active_requests == 0 for ep in merged[name].endpoints)
    assert merge_clusters(None, [state]) == {}
