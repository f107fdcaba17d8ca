"""Istio's standard metrics, counted in plain integers and rendered only when scraped.

A request is recorded with one dict lookup and a few integer additions (about 0.5 µs; a
prometheus-client child per label set costs about 3.3 µs, because every ``inc``/``observe``
takes a lock): the hot key is built from strings the data plane already holds, and the first
request with a new key resolves its Istio labels from the snapshot and is given the counters
of that label set.  A scrape turns the counters into Prometheus text through
prometheus-client's exposition (its own :class:`CollectorRegistry`, never the global one).

With ``--workers N`` each worker exports :meth:`Metrics.state` (a JSON-able dict) and the
supervisor renders :func:`isthmus.obs.exposition.merge_states` of them: counters and histogram
buckets add up, gauges combine by their own rule.

Histogram buckets: durations use Envoy's default buckets, which Istio's proxies use unless
``sidecar.istio.io/statsHistogramBuckets`` overrides them (envoy
``source/common/stats/histogram_impl.cc``); sizes use the byte buckets Istio's Prometheus
adapter defined (1 B … 10 MB, ×10).  Both can be changed per :class:`Metrics`.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from prometheus_client import CollectorRegistry

from isthmus.obs.exposition import MetricsState, StateCollector, render_state
from isthmus.obs.gauges import Sources, sample
from isthmus.obs.labels import (
    NO_FLAGS,
    SECURITY_POLICY,
    UNKNOWN,
    destination_labels,
    source_labels,
)
from isthmus.snapshot.types import Snapshot

DURATION_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
BYTES_BUCKETS: tuple[float, ...] = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000)

HttpCounters: TypeAlias = list[float]
"""``[count, duration_sum, request_bytes_sum, response_bytes_sum, *duration_buckets,
*request_bytes_buckets, *response_bytes_buckets]``; buckets are per-bucket (not cumulative),
the last of each is ``+Inf``."""

TcpSeries: TypeAlias = list[int]
"""``[opened, closed, sent_bytes, received_bytes]`` of one TCP label set; opaque to callers."""


class Metrics:
    """The gateway's metrics: Istio's ``istio_*`` (``reporter="source"``) and isthmus's own.

    ``workload``/``namespace``/``labels`` describe the gateway itself (the source side);
    ``sources`` are callbacks read at scrape time for the gauges.  Call :meth:`set_snapshot`
    with every snapshot that starts serving, before the requests that use it are recorded.
    Not thread-safe for recording: record from the event loop that owns this object.
    """

    def __init__(
        self,
        *,
        workload: str = "istio-ingressgateway",
        namespace: str = "istio-system",
        labels: Mapping[str, str] | None = None,
        cluster_id: str = "Kubernetes",
        principal: str = UNKNOWN,
        sources: Sources | None = None,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        bytes_buckets: Sequence[float] = BYTES_BUCKETS,
    ) -> None:
        self.cluster_id = cluster_id
        self.sources = sources if sources is not None else Sources()
        self.source = source_labels(workload, namespace, labels or {}, cluster_id, principal)
        self.duration_buckets = tuple(float(b) for b in duration_buckets)
        self.bytes_buckets = tuple(float(b) for b in bytes_buckets)
        self._snapshot: Snapshot | None = None
        n_duration = len(self.duration_buckets) + 1
        n_bytes = len(self.bytes_buckets) + 1
        self._cell_size = 4 + n_duration + 2 * n_bytes
        self._request_offset = 4 + n_duration
        self._response_offset = self._request_offset + n_bytes
        # label tuple -> counters: what is exported, kept across snapshots
        self._http_series: dict[tuple[str, ...], HttpCounters] = {}
        self._tcp_series: dict[tuple[str, ...], TcpSeries] = {}
        # hot keys -> the counters of their label set; cleared when the snapshot changes
        self._http: dict[tuple[str, str, int, str], HttpCounters] = {}
        self._grpc: dict[tuple[str, str, int, str, str], HttpCounters] = {}
        self._tcp: dict[tuple[str, str, str], TcpSeries] = {}
        self._destinations: dict[tuple[str, str], tuple[str, ...]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StateCollector(self.state))

    # --- configuration -------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Resolve labels against ``snapshot`` from now on (counters are kept)."""
        if snapshot is self._snapshot:
            return
        self._snapshot = snapshot
        self._http.clear()
        self._grpc.clear()
        self._tcp.clear()
        self._destinations.clear()

    # --- the request path ----------------------------------------------------------------------

    def http(
        self,
        cluster: str,
        upstream: str,
        status: int,
        flags: str,
        duration_ms: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """One finished HTTP request.

        ``cluster`` is the cluster name (``""`` for a local reply with none), ``upstream`` the
        chosen endpoint's key ``address:port`` as in the snapshot (``""`` if none), ``flags``
        Envoy's response flags (``"-"`` for none), ``duration_ms`` from the first request byte
        to the last response byte, and the byte counts are what crossed the downstream
        connection (headers included).
        """
        c = self._http.get((cluster, upstream, status, flags))
        if c is None:
            c = self._http_miss(cluster, upstream, status, flags, "http", "")
            self._http[(cluster, upstream, status, flags)] = c
        c[0] += 1
        c[1] += duration_ms
        c[2] += request_bytes
        c[3] += response_bytes
        c[4 + bisect.bisect_left(self.duration_buckets, duration_ms)] += 1
        c[self._request_offset + bisect.bisect_left(self.bytes_buckets, request_bytes)] += 1
        c[self._response_offset + bisect.bisect_left(self.bytes_buckets, response_bytes)] += 1

    def grpc(
        self,
        cluster: str,
        upstream: str,
        status: int,
        grpc_status: str,
        flags: str,
        duration_ms: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """Like :meth:`http` for a gRPC request (``request_protocol="grpc"``); ``grpc_status``
        is the ``grpc-status`` the response carried, ``""`` if none."""
        key = (cluster, upstream, status, flags, grpc_status)
        c = self._grpc.get(key)
        if c is None:
            c = self._http_miss(cluster, upstream, status, flags, "grpc", grpc_status)
            self._grpc[key] = c
        c[0] += 1
        c[1] += duration_ms
        c[2] += request_bytes
        c[3] += response_bytes
        c[4 + bisect.bisect_left(self.duration_buckets, duration_ms)] += 1
        c[self._request_offset + bisect.bisect_left(self.bytes_buckets, request_bytes)] += 1
        c[self._response_offset + bisect.bisect_left(self.bytes_buckets, response_bytes)] += 1

    def tcp_open(self, cluster: str, upstream: str) -> TcpSeries:
        """A TCP connection was relayed to ``upstream``: counts it opened and returns the
        series to pass to :meth:`tcp_close` when it ends."""
        series = self._tcp_get(cluster, upstream, NO_FLAGS)
        series[0] += 1
        return series

    @staticmethod
    def tcp_close(series: TcpSeries, sent: int, received: int) -> None:
        """The connection of ``series`` closed after ``sent`` bytes to the downstream client
        and ``received`` from it."""
        series[1] += 1
        series[2] += sent
        series[3] += received

    def tcp_failed(
        self, cluster: str, upstream: str, flags: str, sent: int = 0, received: int = 0
    ) -> None:
        """A TCP connection that never reached an upstream (``UF``, ``UH``, ``UO``...): counted
        opened and closed at once with its flags, as Envoy reports it at close."""
        series = self._tcp_get(cluster, upstream, flags)
        series[0] += 1
        series[1] += 1
        series[2] += sent
        series[3] += received

    # --- cold path: first request of a key -----------------------------------------------------

    def _destination(self, cluster: str, upstream: str) -> tuple[str, ...]:
        found = self._destinations.get((cluster, upstream))
        if found is None:
            found = destination_labels(self._snapshot, cluster, upstream, self.cluster_id)
            self._destinations[(cluster, upstream)] = found
        return found

    def _http_miss(
        self, cluster: str, upstream: str, status: int, flags: str, protocol: str, grpc: str
    ) -> HttpCounters:
        labels = (
            *self.source,
            *self._destination(cluster, upstream),
            protocol,
            str(status),
            grpc,
            flags or NO_FLAGS,
            SECURITY_POLICY,
        )
        series = self._http_series.get(labels)
        if series is None:
            series = self._http_series[labels] = [0] * self._cell_size
        return series

    def _tcp_get(self, cluster: str, upstream: str, flags: str) -> TcpSeries:
        series = self._tcp.get((cluster, upstream, flags))
        if series is None:
            labels = (
                *self.source,
                *self._destination(cluster, upstream),
                "tcp",
                flags or NO_FLAGS,
                SECURITY_POLICY,
            )
            series = self._tcp_series.get(labels)
            if series is None:
                series = self._tcp_series[labels] = [0, 0, 0, 0]
            self._tcp[(cluster, upstream, flags)] = series
        return series

    # --- export --------------------------------------------------------------------------------

    def state(self, now: float | None = None) -> MetricsState:
        """Every counter and gauge as plain JSON-able data, for :func:`render_state` or for a
        supervisor to merge with the other workers' states."""
        now = time.time() if now is None else now
        return {
            "format": 1,
            "pid": os.getpid(),
            "time": now,
            "duration_buckets": list(self.duration_buckets),
            "bytes_buckets": list(self.bytes_buckets),
            # list() first: a copy taken without running Python code, so a scrape from
            # another thread never sees the dicts change under it
            "http": [(list(k), list(v)) for k, v in list(self._http_series.items())],
            "tcp": [(list(k), list(v)) for k, v in list(self._tcp_series.items())],
            "gauges": sample(self.sources, self._snapshot, now),
        }

    def render(self) -> bytes:
        """This process's metrics in Prometheus text format (``/stats/prometheus``)."""
        return render_state(self.state())
