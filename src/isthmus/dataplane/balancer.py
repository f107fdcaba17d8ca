"""Choosing an endpoint of a cluster: Envoy's load balancers as Istio configures them.

* ``LEAST_REQUEST`` (Istio's default): Envoy's power of two choices — two distinct random
  endpoints, the one with fewer active requests wins.  With unequal weights the two are drawn by
  weight and compared on ``(active + 1) / weight``, close to Envoy's weighted EDF.
* ``ROUND_ROBIN``: in endpoint order; unequal weights use smooth weighted round robin.
* ``RANDOM``: uniform, or by weight.
* consistent hash (``useSourceIp``, and header/cookie/query keys given by the HTTP layer): a hash
  ring like Envoy's ``RING_HASH`` (Istio's default for ``consistentHash``), 256 points per unit
  of weight.  The same key maps to the same endpoint while endpoints are unchanged; removing one
  moves only the keys it owned.  An unusable owner passes the key on along the ring; with no key
  the pick is random, as in Envoy.  (Envoy hashes with xxHash, so which endpoint a given IP
  lands on differs from Envoy's; stickiness is what matters.)

Ejected endpoints (outlier detection) and ``exclude`` (endpoints a retry already tried) are
skipped.  If fewer than ``min_health_percent`` of the endpoints are healthy the cluster is in
*panic* and ejections are ignored, which is how Istio maps ``minHealthPercent``.

State lives in :class:`ClusterState`, kept by :class:`ClusterStates` across snapshot swaps;
per-endpoint state (active counts, outlier counters) is kept by endpoint key even when the
cluster changes, so an ejection or a count of in-flight requests survives an unrelated reload.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from isthmus.dataplane.outlier import Clock, OutlierDetector, OutlierStatus
from isthmus.snapshot.types import Cluster, Endpoint, LoadBalancer

RING_POINTS_PER_WEIGHT = 256
RING_MAX_SIZE = 1 << 16
_WRR_MAX_SCHEDULE = 1024

Usable = Callable[["EndpointState"], bool] | None


class EndpointState:
    """One endpoint's live counters; ``active_requests`` is what LEAST_REQUEST compares."""

    __slots__ = ("active_connections", "active_requests", "endpoint", "key", "outlier")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.key = endpoint.key
        self.active_requests = 0
        self.active_connections = 0
        self.outlier = OutlierStatus()

    def __repr__(self) -> str:
        return f"EndpointState({self.key}, requests={self.active_requests})"


class _Picker(Protocol):
    def pick(
        self,
        hosts: Sequence[EndpointState],
        usable: Usable,
        key: str | None,
        rng: random.Random,
    ) -> EndpointState | None: ...


def _weights(hosts: Sequence[EndpointState]) -> list[int]:
    return [max(1, h.endpoint.weight) for h in hosts]


def _candidates(hosts: Sequence[EndpointState], usable: Usable) -> Sequence[EndpointState]:
    return hosts if usable is None else [h for h in hosts if usable(h)]


class _RoundRobin:
    def __init__(self, hosts: Sequence[EndpointState]) -> None:
        self.schedule = _smooth_weighted_schedule(_weights(hosts))
        self.cursor = 0

    def pick(
        self, hosts: Sequence[EndpointState], usable: Usable, key: str | None, rng: random.Random
    ) -> EndpointState | None:
        schedule = self.schedule
        n = len(schedule)
        for _ in range(n):
            host = hosts[schedule[self.cursor]]
            self.cursor = (self.cursor + 1) % n
            if usable is None or usable(host):
                return host
        return None


def _smooth_weighted_schedule(weights: list[int]) -> list[int]:
    """nginx's smooth weighted round robin, unrolled once: weights 5,1,1 → a a b a c a a."""
    if len(set(weights)) <= 1:
        return list(range(len(weights)))
    g = math.gcd(*weights)
    w = [x // g for x in weights]
    total = sum(w)
    if total > _WRR_MAX_SCHEDULE:
        w = [max(1, round(x * _WRR_MAX_SCHEDULE / total)) for x in w]
        total = sum(w)
    current = [0] * len(w)
    schedule = []
    for _ in range(total):
        for i, x in enumerate(w):
            current[i] += x
        best = max(range(len(w)), key=current.__getitem__)
        current[best] -= total
        schedule.append(best)
    return schedule


class _Random:
    def __init__(self, hosts: Sequence[EndpointState]) -> None:
        self.weighted = len(set(_weights(hosts))) > 1

    def pick(
        self, hosts: Sequence[EndpointState], usable: Usable, key: str | None, rng: random.Random
    ) -> EndpointState | None:
        candidates = _candidates(hosts, usable)
        if not candidates:
            return None
        if self.weighted:
            return rng.choices(candidates, weights=_weights(candidates))[0]
        return rng.choice(candidates)


class _LeastRequest:
    def __init__(self, hosts: Sequence[EndpointState]) -> None:
        self.weighted = len(set(_weights(hosts))) > 1

    def pick(
        self, hosts: Sequence[EndpointState], usable: Usable, key: str | None, rng: random.Random
    ) -> EndpointState | None:
        candidates = _candidates(hosts, usable)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        if self.weighted:
            a, b = rng.choices(candidates, weights=_weights(candidates), k=2)
            wa, wb = max(1, a.endpoint.weight), max(1, b.endpoint.weight)
            return a if (a.active_requests + 1) * wb <= (b.active_requests + 1) * wa else b
        a, b = rng.sample(candidates, 2)
        return a if a.active_requests <= b.active_requests else b


def _hash64(text: str) -> int:
    """A hash stable across processes and restarts (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class _RingHash:
    """Points per endpoint depend on its own weight only, not on the others: removing one
    endpoint moves just its keys (Envoy normalizes by the total, which reshuffles more)."""

    def __init__(self, hosts: Sequence[EndpointState]) -> None:
        weights = _weights(hosts)
        per_weight = min(RING_POINTS_PER_WEIGHT, RING_MAX_SIZE / (sum(weights) or 1))
        points: list[tuple[int, int]] = []
        for index, (host, weight) in enumerate(zip(hosts, weights, strict=True)):
            for replica in range(max(1, round(per_weight * weight))):
                points.append((_hash64(f"{host.key}_{replica}"), index))
        points.sort()
        self.hashes = [p[0] for p in points]
        self.owners = [p[1] for p in points]
        self.fallback = _Random(hosts)

    def pick(
        self, hosts: Sequence[EndpointState], usable: Usable, key: str | None, rng: random.Random
    ) -> EndpointState | None:
        if key is None or not self.hashes:
            return self.fallback.pick(hosts, usable, key, rng)
        n = len(self.hashes)
        start = bisect.bisect_left(self.hashes, _hash64(key))
        for step in range(n):
            host = hosts[self.owners[(start + step) % n]]
            if usable is None or usable(host):
                return host
        return None


def uses_hash(lb: LoadBalancer) -> bool:
    return bool(lb.hash_source_ip or lb.hash_header or lb.hash_cookie or lb.hash_query_parameter)


def _make_picker(lb: LoadBalancer, hosts: Sequence[EndpointState]) -> _Picker:
    if uses_hash(lb):
        return _RingHash(hosts)
    if lb.simple == "ROUND_ROBIN":
        return _RoundRobin(hosts)
    if lb.simple == "RANDOM":
        return _Random(hosts)
    return _LeastRequest(hosts)  # LEAST_REQUEST, unset, and PASSTHROUGH (no meaning here)


class ClusterState:
    """Everything the data plane remembers about one cluster between connections."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.active_connections = 0
        self.endpoints: tuple[EndpointState, ...] = ()
        self.detector: OutlierDetector | None = None
        self.cluster = cluster
        self._picker: _Picker = _LeastRequest(())
        self.update(cluster)

    def update(self, cluster: Cluster) -> None:
        """Take a changed cluster, keeping the state of endpoints whose key remains."""
        previous = {st.key: st for st in self.endpoints}
        states: list[EndpointState] = []
        seen: set[str] = set()
        for endpoint in cluster.endpoints:
            if endpoint.key in seen:
                continue
            seen.add(endpoint.key)
            st = previous.get(endpoint.key)
            if st is None:
                st = EndpointState(endpoint)
            else:
                st.endpoint = endpoint
            states.append(st)
        self.cluster = cluster
        self.endpoints = tuple(states)
        self._picker = _make_picker(cluster.load_balancer, self.endpoints)
        config = cluster.outlier_detection
        statuses = [st.outlier for st in self.endpoints]
        if config is None:
            self.detector = None
        elif self.detector is None:
            self.detector = OutlierDetector(config, statuses, clock=self.clock)
        else:
            self.detector.configure(config, statuses)

    def choose(
        self,
        *,
        source_ip: str | None = None,
        hash_key: str | None = None,
        exclude: Collection[str] = (),
    ) -> EndpointState | None:
        """Pick an endpoint, or ``None`` when none is usable (Envoy's "no healthy upstream").

        ``exclude`` holds endpoint keys (``address:port``) not to pick again.  ``hash_key``
        overrides the source IP as the consistent-hash key (the HTTP layer's header/cookie).
        """
        hosts = self.endpoints
        if not hosts:
            return None
        detector = self.detector
        if len(hosts) == 1 and detector is None:  # nothing to choose from (every policy)
            return None if hosts[0].key in exclude else hosts[0]
        if detector is not None and not self._ejections_apply(detector):
            detector = None
        usable: Usable = None
        if exclude or detector is not None:

            def usable(host: EndpointState) -> bool:
                if host.key in exclude:
                    return False
                return detector is None or not detector.is_ejected(host.outlier)

        lb = self.cluster.load_balancer
        key = hash_key if hash_key is not None else (source_ip if lb.hash_source_ip else None)
        return self._picker.pick(hosts, usable, key, self.rng)

    def _ejections_apply(self, detector: OutlierDetector) -> bool:
        """False when nothing is ejected, or in panic (too few healthy endpoints to be picky)."""
        ejected = detector.ejected_count()
        if not ejected:
            return False
        threshold = detector.config.min_health_percent
        healthy = len(self.endpoints) - ejected
        return not (threshold > 0 and 100.0 * healthy / len(self.endpoints) < threshold)

    def is_ejected(self, endpoint: EndpointState) -> bool:
        return self.detector is not None and self.detector.is_ejected(endpoint.outlier)

    # --- accounting ----------------------------------------------------------------------------

    def acquire(self, endpoint: EndpointState) -> None:
        """A request (or relayed TCP connection) starts on ``endpoint``."""
        endpoint.active_requests += 1

    def release(self, endpoint: EndpointState) -> None:
        endpoint.active_requests = max(0, endpoint.active_requests - 1)

    def connection_opened(self, endpoint: EndpointState) -> None:
        """An upstream connection (counted from the connect attempt, as Envoy's breaker does)."""
        endpoint.active_connections += 1
        self.active_connections += 1

    def connection_closed(self, endpoint: EndpointState) -> None:
        endpoint.active_connections = max(0, endpoint.active_connections - 1)
        self.active_connections = max(0, self.active_connections - 1)

    # --- outcomes for outlier detection --------------------------------------------------------

    def connect_failed(self, endpoint: EndpointState, *, timeout: bool = False) -> None:
        if self.detector is not None:
            self.detector.connect_failed(endpoint.outlier, timeout=timeout)

    def connect_succeeded(self, endpoint: EndpointState, *, final: bool = True) -> None:
        if self.detector is not None:
            self.detector.connect_succeeded(endpoint.outlier, final=final)

    def http_status(self, endpoint: EndpointState, status: int) -> None:
        if self.detector is not None:
            self.detector.http_status(endpoint.outlier, status)


class ClusterStates:
    """Cluster states by name, surviving snapshot swaps while each cluster is unchanged.

    A changed cluster (endpoints, policy) keeps its state object and per-endpoint state; a
    cluster gone from the snapshot is dropped by :meth:`retain`.
    """

    def __init__(self, *, clock: Clock = time.monotonic, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self._states: dict[str, ClusterState] = {}

    def get(self, cluster: Cluster) -> ClusterState:
        state = self._states.get(cluster.name)
        if state is None:
            state = ClusterState(cluster, clock=self.clock, rng=self.rng)
            self._states[cluster.name] = state
        elif state.cluster is not cluster:
            if state.cluster == cluster:
                state.cluster = cluster  # equal object from a new snapshot: identity next time
            else:
                state.update(cluster)
        return state

    def retain(self, names: Collection[str]) -> None:
        """Forget clusters not in ``names`` (call after publishing a snapshot)."""
        for name in [n for n in self._states if n not in names]:
            del self._states[name]

    def __contains__(self, name: object) -> bool:
        return name in self._states

    def __len__(self) -> int:
        return len(self._states)
