"""Workers' live upstream state, for the admin API of a ``--workers N`` supervisor.

Each worker balances and detects outliers on its own, so the supervisor's ``/clusters`` shows
the gateway by merging what the workers publish with their metrics state (once a second, in
the same file: :class:`WorkerState`).  Active requests and connections add up; an endpoint
is ejected while any worker keeps it ejected; ejections add up; the consecutive failure
counters show the highest worker's.

Ejection deadlines are ``time.monotonic()`` values: on Linux that clock (``CLOCK_MONOTONIC``)
is one for the whole machine, so the supervisor compares them with its own clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from isthmus.obs.exposition import MetricsState
from isthmus.obs.views import ClusterView
from isthmus.snapshot.types import Cluster, Endpoint, Snapshot


class EndpointSample(TypedDict):
    """One endpoint as one worker sees it."""

    key: str
    rq_active: int
    cx_active: int
    ejected_until: float | None
    times_ejected: int
    consecutive_5xx: int
    consecutive_gateway_errors: int
    consecutive_local_origin_failures: int


class WorkerState(MetricsState, total=False):
    """What a worker publishes: its metrics, the config version it serves, its endpoints."""

    config_version: str
    endpoints: dict[str, list[EndpointSample]]


def endpoint_samples(clusters: Iterable[ClusterView]) -> dict[str, list[EndpointSample]]:
    """Cluster name → its endpoints' live state, from a worker's cluster states."""
    out: dict[str, list[EndpointSample]] = {}
    for state in clusters:
        samples: list[EndpointSample] = []
        for ep in state.endpoints:
            outlier = ep.outlier
            samples.append(
                {
                    "key": ep.key,
                    "rq_active": ep.active_requests,
                    "cx_active": ep.active_connections,
                    "ejected_until": outlier.ejected_until if state.is_ejected(ep) else None,
                    "times_ejected": outlier.times_ejected,
                    "consecutive_5xx": outlier.consecutive_5xx,
                    "consecutive_gateway_errors": outlier.consecutive_gateway_errors,
                    "consecutive_local_origin_failures": outlier.consecutive_local_origin_failures,
                }
            )
        out[state.cluster.name] = samples
    return out


@dataclass
class MergedOutlier:
    """An :class:`isthmus.obs.views.OutlierView` over all workers."""

    consecutive_5xx: int = 0
    consecutive_gateway_errors: int = 0
    consecutive_local_origin_failures: int = 0
    ejected_until: float | None = None
    times_ejected: int = 0


@dataclass
class MergedEndpoint:
    """An :class:`isthmus.obs.views.EndpointView` over all workers."""

    key: str
    endpoint: Endpoint
    active_requests: int = 0
    active_connections: int = 0
    outlier: MergedOutlier = field(default_factory=MergedOutlier)

    def add(self, sample: EndpointSample, now: float) -> None:
        self.active_requests += sample["rq_active"]
        self.active_connections += sample["cx_active"]
        o = self.outlier
        o.times_ejected += sample["times_ejected"]
        o.consecutive_5xx = max(o.consecutive_5xx, sample["consecutive_5xx"])
        o.consecutive_gateway_errors = max(
            o.consecutive_gateway_errors, sample["consecutive_gateway_errors"]
        )
        o.consecutive_local_origin_failures = max(
            o.consecutive_local_origin_failures, sample["consecutive_local_origin_failures"]
        )
        until = sample["ejected_until"]
        if until is not None and until > now:
            o.ejected_until = until if o.ejected_until is None else max(o.ejected_until, until)


@dataclass
class MergedCluster:
    """An :class:`isthmus.obs.views.ClusterView` over all workers."""

    cluster: Cluster
    endpoints: Sequence[MergedEndpoint]

    @property
    def active_connections(self) -> int:
        return sum(ep.active_connections for ep in self.endpoints)

    def is_ejected(self, endpoint: Any) -> bool:
        return isinstance(endpoint, MergedEndpoint) and endpoint.outlier.ejected_until is not None


def merge_clusters(
    snapshot: Snapshot | None,
    states: Iterable[WorkerState],
    now: float | None = None,
) -> Mapping[str, MergedCluster]:
    """The clusters of ``snapshot`` with the workers' endpoint samples added up.

    Endpoints a worker reports that ``snapshot`` does not have (a worker still on the
    previous config, or already on the next) are left out."""
    if snapshot is None:
        return {}
    now = time.monotonic() if now is None else now
    merged: dict[str, MergedCluster] = {}
    for name, cluster in snapshot.clusters.items():
        endpoints = {ep.key: MergedEndpoint(ep.key, ep) for ep in cluster.endpoints}
        merged[name] = MergedCluster(cluster, list(endpoints.values()))
    for state in states:
        for name, samples in state.get("endpoints", {}).items():
            found = merged.get(name)
            if found is None:
                continue
            by_key = {ep.key: ep for ep in found.endpoints}
            for sample in samples:
                ep = by_key.get(sample["key"])
                if ep is not None:
                    ep.add(sample, now)
    return merged
