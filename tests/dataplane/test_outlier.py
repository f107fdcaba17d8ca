"""Outlier detection with an injected clock: counting, ejection time, max_ejection_percent."""

from __future__ import annotations

import random

from isthmus.dataplane.balancer import ClusterState, ClusterStates
from isthmus.dataplane.outlier import OutlierDetector, OutlierStatus
from isthmus.snapshot.types import OutlierDetection

from .test_balancer import cluster


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def detector(n: int = 1, **config: object) -> tuple[OutlierDetector, list[OutlierStatus], Clock]:
    clock = Clock()
    hosts = [OutlierStatus() for _ in range(n)]
    config.setdefault("max_ejection_percent", 100)
    return OutlierDetector(OutlierDetection(**config), hosts, clock=clock), hosts, clock  # type: ignore[arg-type]


def test_consecutive_connect_failures_eject_as_5xx() -> None:
    d, (h,), _ = detector()
    for _ in range(4):
        d.connect_failed(h)
    assert not d.is_ejected(h)
    d.connect_failed(h)
    assert d.is_ejected(h)
    assert h.times_ejected == 1


def test_success_resets_the_count() -> None:
    d, (h,), _ = detector()
    for _ in range(4):
        d.connect_failed(h)
    d.connect_succeeded(h)
    for _ in range(4):
        d.connect_failed(h)
    assert not d.is_ejected(h)


def test_non_final_success_does_not_reset_but_a_2xx_does() -> None:
    d, (h,), _ = detector()
    for _ in range(4):
        d.connect_failed(h)
    d.connect_succeeded(h, final=False)
    d.connect_failed(h)
    assert d.is_ejected(h)
    d2, (h2,), _ = detector()
    for _ in range(4):
        d2.http_status(h2, 503)
    d2.http_status(h2, 200)
    d2.http_status(h2, 500)
    assert not d2.is_ejected(h2)


def test_gateway_errors_count_connect_failures_when_configured() -> None:
    d, (h,), _ = detector(consecutive_5xx=0, consecutive_gateway_errors=2)
    d.connect_failed(h, timeout=True)
    d.connect_failed(h)
    assert d.is_ejected(h)
    off, (h2,), _ = detector(consecutive_5xx=0)
    for _ in range(20):
        off.connect_failed(h2)
    assert not off.is_ejected(h2)


def test_split_mode_counts_local_origin_failures_separately() -> None:
    d, (h,), _ = detector(split_external_local_origin_errors=True)
    for _ in range(4):
        d.connect_failed(h)
    assert h.consecutive_5xx == 0 and not d.is_ejected(h)
    d.connect_failed(h)  # Envoy's default consecutive_local_origin_failure is 5
    assert d.is_ejected(h)
    d2, (h2,), _ = detector(
        split_external_local_origin_errors=True, consecutive_local_origin_failures=2
    )
    d2.connect_failed(h2)
    d2.connect_succeeded(h2, final=False)  # any connect success resets the local-origin count
    d2.connect_failed(h2)
    assert not d2.is_ejected(h2)
    d2.connect_failed(h2)
    assert d2.is_ejected(h2)


def test_ejection_time_is_base_times_ejections_and_return_is_exact() -> None:
    d, (h,), clock = detector(consecutive_5xx=1, base_ejection_time=30.0)
    d.connect_failed(h)
    clock.now += 29.9
    assert d.is_ejected(h)
    clock.now += 0.1
    assert not d.is_ejected(h)
    d.connect_failed(h)  # fails again right away: twice the time
    clock.now += 59.9
    assert d.is_ejected(h)
    clock.now += 0.1
    assert not d.is_ejected(h)
    clock.now += 10 * 60  # a long healthy spell lets the backoff decay back to the base
    d.connect_failed(h)
    clock.now += 30.0
    assert not d.is_ejected(h)


def test_max_ejection_percent_follows_envoy() -> None:
    # Envoy >= 1.31: eject only if (ejected + 1) / hosts stays within the percentage.
    d, hosts, _ = detector(3, consecutive_5xx=1, max_ejection_percent=10)
    d.connect_failed(hosts[0])
    assert not d.is_ejected(hosts[0])
    assert d.ejections_overflow == 1
    d, hosts, _ = detector(4, consecutive_5xx=1, max_ejection_percent=50)
    for h in hosts:
        d.connect_failed(h)
    assert [d.is_ejected(h) for h in hosts] == [True, True, False, False]
    assert d.ejected_count() == 2


def test_balancer_skips_ejected_endpoints_until_they_return() -> None:
    clock = Clock()
    c = cluster(1, 2, 3, outlier=OutlierDetection(consecutive_5xx=1, max_ejection_percent=100))
    s = ClusterState(c, clock=clock, rng=random.Random(3))
    s.connect_failed(s.endpoints[0])
    assert 1 not in {s.choose().endpoint.port for _ in range(50)}  # type: ignore[union-attr]
    clock.now += 30.0
    assert 1 in {s.choose().endpoint.port for _ in range(50)}  # type: ignore[union-attr]


def test_panic_below_min_health_percent_ignores_ejections() -> None:
    clock = Clock()
    config = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100, min_health_percent=50)
    s = ClusterState(cluster(1, 2, outlier=config), clock=clock, rng=random.Random(3))
    s.connect_failed(s.endpoints[0])
    assert {s.choose().endpoint.port for _ in range(30)} == {2}  # type: ignore[union-attr]
    s.connect_failed(s.endpoints[1])
    assert {s.choose().endpoint.port for _ in range(30)} == {1, 2}  # type: ignore[union-attr]
    strict = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100)
    s2 = ClusterState(cluster(1, outlier=strict), clock=clock)
    s2.connect_failed(s2.endpoints[0])
    assert s2.choose() is None  # no panic threshold: no healthy upstream


def test_ejection_survives_snapshot_swaps_while_the_endpoint_remains() -> None:
    clock = Clock()
    config = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100)
    states = ClusterStates(clock=clock, rng=random.Random(5))
    s = states.get(cluster(1, 2, outlier=config))
    s.connect_failed(s.endpoints[0])
    s = states.get(cluster(1, 2, outlier=config))  # an equal cluster from a new snapshot
    assert s.is_ejected(s.endpoints[0])
    s = states.get(cluster(1, 2, 3, outlier=config))  # endpoint added: state kept by key
    assert s.is_ejected(s.endpoints[0])
    assert {s.choose().endpoint.port for _ in range(30)} == {2, 3}  # type: ignore[union-attr]
