"""Istio metrics: exact values after a known sequence, buckets, labels, merging workers."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.control.reload import ConfigState, Rejection
from isthmus.dataplane.balancer import ClusterStates
from isthmus.obs.exposition import (
    MetricsState,
    merge_states,
    read_states,
    render_state,
    write_state,
)
from isthmus.obs.gauges import Sources
from isthmus.obs.labels import HTTP_LABELS, TCP_LABELS, workload_name
from isthmus.obs.metrics import BYTES_BUCKETS, DURATION_BUCKETS, Metrics
from isthmus.refs import ResourceRef
from isthmus.snapshot.types import Endpoint, Snapshot
from tests.obs.fakes import bookinfo_https_snapshot, tcp_echo_snapshot
from tests.tls_certs import CertAuthority

V1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"
V2 = "outbound|9000|v2|tcp-echo.default.svc.cluster.local"
EP1 = "127.0.0.1:9001"
EP2 = "127.0.0.1:9002"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: bytes) -> Samples:
    """Every sample as ``(name, labels) -> value``."""
    out: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def find(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return {k: v for (n, k), v in samples.items() if n == name and want <= k}


def one(samples: Samples, name: str, **labels: str) -> float:
    found = find(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


@pytest.fixture
def snapshot() -> Snapshot:
    return tcp_echo_snapshot()


@pytest.fixture
def metrics(snapshot: Snapshot) -> Metrics:
    m = Metrics(workload="istio-ingressgateway", namespace="istio-system")
    m.set_snapshot(snapshot)
    return m


def record_sequence(m: Metrics) -> None:
    m.http(V1, EP1, 200, "-", 0.3, 0, 1)
    m.http(V1, EP1, 200, "-", 7.0, 50, 999)
    m.http(V1, EP1, 200, "-", 4000.0, 5_000_000, 20_000_000)
    m.http(V1, EP1, 503, "UF", 12.0, 80, 150)
    m.http("", "", 404, "NR", 0.1, 70, 90)


def test_requests_total_counts_each_status_and_flag(metrics: Metrics) -> None:
    record_sequence(metrics)
    s = parse(metrics.render())
    assert one(s, "istio_requests_total", response_code="200", response_flags="-") == 3
    assert one(s, "istio_requests_total", response_code="503", response_flags="UF") == 1
    assert one(s, "istio_requests_total", response_code="404", response_flags="NR") == 1
    assert sum(find(s, "istio_requests_total").values()) == 5


def test_duration_histogram_buckets_and_sum(metrics: Metrics) -> None:
    record_sequence(metrics)
    s = parse(metrics.render())
    ok = {"response_code": "200"}
    bucket = "istio_request_duration_milliseconds_bucket"
    counts = {
        "0.5": 1, "1": 1, "5": 1, "10": 2, "25": 2, "2500": 2, "5000": 3, "3.6e+06": 3, "+Inf": 3,
    }  # fmt: skip
    for le, count in counts.items():
        assert one(s, bucket, le=le, **ok) == count, le
    les = {dict(k)["le"] for k in find(s, bucket, **ok)}
    assert les == {format(b, "g") for b in DURATION_BUCKETS} | {"+Inf"}
    assert one(s, "istio_request_duration_milliseconds_sum", **ok) == pytest.approx(4007.3)
    assert one(s, "istio_request_duration_milliseconds_count", **ok) == 3


def test_byte_histograms_count_a_boundary_value_in_its_bucket(metrics: Metrics) -> None:
    record_sequence(metrics)
    s = parse(metrics.render())
    ok = {"response_code": "200"}
    request = {"1": 1, "10": 1, "100": 2, "1e+06": 2, "1e+07": 3, "+Inf": 3}
    for le, count in request.items():
        assert one(s, "istio_request_bytes_bucket", le=le, **ok) == count, le
    response = {"1": 1, "100": 1, "1000": 2, "1e+07": 2, "+Inf": 3}
    for le, count in response.items():
        assert one(s, "istio_response_bytes_bucket", le=le, **ok) == count, le
    les = {dict(k)["le"] for k in find(s, "istio_response_bytes_bucket", **ok)}
    assert les == {format(b, "g") for b in BYTES_BUCKETS} | {"+Inf"}
    assert one(s, "istio_request_bytes_sum", **ok) == 5_000_050
    assert one(s, "istio_response_bytes_sum", **ok) == 20_001_000


def test_istio_labels_of_a_routed_request(metrics: Metrics) -> None:
    metrics.http(V1, EP1, 200, "-", 1.0, 1, 1)
    s = parse(metrics.render())
    (labels,) = find(s, "istio_requests_total")
    assert dict(labels) == {
        "reporter": "source",
        "source_workload": "istio-ingressgateway",
        "source_canonical_service": "istio-ingressgateway",
        "source_canonical_revision": "latest",
        "source_workload_namespace": "istio-system",
        "source_principal": "unknown",
        "source_app": "istio-ingressgateway",
        "source_version": "unknown",
        "source_cluster": "Kubernetes",
        "destination_workload": "tcp-echo-v1",
        "destination_workload_namespace": "default",
        "destination_principal": "unknown",
        "destination_app": "tcp-echo",
        "destination_version": "v1",
        "destination_service": "tcp-echo.default.svc.cluster.local",
        "destination_canonical_service": "tcp-echo",
        "destination_canonical_revision": "v1",
        "destination_service_name": "tcp-echo",
        "destination_service_namespace": "default",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "200",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "unknown",
    }
    assert set(dict(labels)) == set(HTTP_LABELS)


def test_no_route_has_unknown_destination(metrics: Metrics) -> None:
    metrics.http("", "", 404, "NR", 0.1, 70, 90)
    labels = dict(next(iter(find(parse(metrics.render()), "istio_requests_total"))))
    assert labels["destination_service"] == "unknown"
    assert labels["destination_workload"] == "unknown"
    assert labels["destination_canonical_revision"] == "latest"
    assert labels["response_flags"] == "NR"


def test_missing_cluster_keeps_the_service_from_its_name(metrics: Metrics) -> None:
    metrics.http("outbound|80||gone.shop.svc.cluster.local", "", 500, "NC", 0.1, 1, 1)
    labels = dict(next(iter(find(parse(metrics.render()), "istio_requests_total"))))
    assert labels["destination_service"] == "gone.shop.svc.cluster.local"
    assert labels["destination_service_name"] == "gone"
    assert labels["destination_service_namespace"] == "shop"


def test_source_labels_from_the_gateway_identity(snapshot: Snapshot) -> None:
    m = Metrics(
        workload="edge",
        namespace="gw",
        labels={"app": "edge-gw", "version": "2", "istio": "ingressgateway"},
        cluster_id="east",
    )
    m.set_snapshot(snapshot)
    m.http(V1, EP1, 200, "-", 1.0, 1, 1)
    labels = dict(next(iter(find(parse(m.render()), "istio_requests_total"))))
    assert labels["source_workload"] == "edge"
    assert labels["source_workload_namespace"] == "gw"
    assert labels["source_app"] == "edge-gw"
    assert labels["source_canonical_service"] == "edge-gw"
    assert labels["source_canonical_revision"] == "2"
    assert labels["source_cluster"] == labels["destination_cluster"] == "east"


def test_grpc_requests(metrics: Metrics) -> None:
    metrics.grpc(V2, EP2, 200, "14", "-", 3.0, 10, 10)
    metrics.grpc(V2, EP2, 200, "0", "-", 3.0, 10, 10)
    s = parse(metrics.render())
    assert one(s, "istio_requests_total", request_protocol="grpc", grpc_response_status="14") == 1
    assert one(s, "istio_requests_total", request_protocol="grpc", grpc_response_status="0") == 1


def test_tcp_connections_and_bytes(metrics: Metrics) -> None:
    a = metrics.tcp_open(V1, EP1)
    b = metrics.tcp_open(V1, EP1)
    metrics.tcp_close(a, 100, 7)
    s = parse(metrics.render())
    ok = {"destination_workload": "tcp-echo-v1", "response_flags": "-"}
    assert one(s, "istio_tcp_connections_opened_total", **ok) == 2
    assert one(s, "istio_tcp_connections_closed_total", **ok) == 1
    metrics.tcp_close(b, 50, 3)
    metrics.tcp_failed(V2, EP2, "UF")
    s = parse(metrics.render())
    assert one(s, "istio_tcp_connections_closed_total", **ok) == 2
    assert one(s, "istio_tcp_sent_bytes_total", **ok) == 150
    assert one(s, "istio_tcp_received_bytes_total", **ok) == 10
    failed = {"destination_workload": "tcp-echo-v2", "response_flags": "UF"}
    assert one(s, "istio_tcp_connections_opened_total", **failed) == 1
    assert one(s, "istio_tcp_connections_closed_total", **failed) == 1
    labels = next(iter(find(s, "istio_tcp_sent_bytes_total", **ok)))
    assert {k for k, _ in labels} == set(TCP_LABELS)
    assert dict(labels)["request_protocol"] == "tcp"


def test_a_new_snapshot_relabels_new_requests_and_keeps_old_counts(
    metrics: Metrics, snapshot: Snapshot
) -> None:
    metrics.http(V1, EP1, 200, "-", 1.0, 1, 1)
    cluster = snapshot.clusters[V1]
    relabelled = dataclasses.replace(
        cluster,
        endpoints=tuple(
            dataclasses.replace(e, labels={"app": "tcp-echo", "version": "v9"})
            for e in cluster.endpoints
        ),
    )
    metrics.set_snapshot(
        dataclasses.replace(snapshot, clusters={**snapshot.clusters, V1: relabelled})
    )
    metrics.http(V1, EP1, 200, "-", 1.0, 1, 1)
    s = parse(metrics.render())
    assert one(s, "istio_requests_total", destination_version="v1") == 1
    assert one(s, "istio_requests_total", destination_version="v9") == 1


def test_workload_names() -> None:
    pod = ResourceRef("Pod", "shop", "reviews-v1-5d8f9c7b6-x2x9k")
    ep = Endpoint("10.0.0.1", 9080, {"app": "reviews", "pod-template-hash": "5d8f9c7b6"}, pod)
    assert workload_name(ep) == "reviews-v1"
    assert workload_name(Endpoint("10.0.0.1", 1, {}, ResourceRef("Pod", "a", "solo"))) == "solo"
    slice_ref = ResourceRef("EndpointSlice", "shop", "reviews-abc")
    assert workload_name(Endpoint("10.0.0.1", 1, {"app": "reviews"}, slice_ref)) == "reviews"
    assert workload_name(Endpoint("10.0.0.1", 1, {}, slice_ref)) == "unknown"


# --- gauges ------------------------------------------------------------------------------------


def test_gauges_from_live_state(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "ca")
    snapshot, leaf = bookinfo_https_snapshot(tmp_path / "cfg", ca)
    states = ClusterStates()
    cluster = dataclasses.replace(next(iter(snapshot.clusters.values())))
    state = states.get(cluster)
    endpoint = state.endpoints[0]
    state.acquire(endpoint)
    config = ConfigState(snapshot.version, reloads_ok=2, reloads_rejected=1)
    config.rejections.append(Rejection(time.time(), ("bad",), snapshot.version))
    m = Metrics(
        sources=Sources(
            config=lambda: config,
            listener_connections=lambda: {"0.0.0.0_443": 3},
            clusters=lambda: [state],
            pending_requests=lambda: {cluster.name: 4},
            access_log_dropped=lambda: 9,
        )
    )
    m.set_snapshot(snapshot)
    s = parse(m.render())
    assert one(s, "isthmus_config_info", version=snapshot.version) == 1
    assert one(s, "isthmus_config_reloads_total", result="ok") == 2
    assert one(s, "isthmus_config_reloads_total", result="rejected") == 1
    assert one(s, "isthmus_config_last_good_timestamp_seconds") == config.last_good_time
    assert one(s, "isthmus_listener_active_connections", listener="0.0.0.0_443") == 3
    assert one(s, "isthmus_cluster_active_requests", cluster=cluster.name) == 1
    assert one(s, "isthmus_cluster_pending_requests", cluster=cluster.name) == 4
    assert one(s, "isthmus_endpoint_ejected", endpoint=endpoint.key) == 0
    assert one(s, "isthmus_access_log_dropped_total") == 9
    expiry = one(
        s, "isthmus_certificate_expiry_seconds", credential="kubernetes://bookinfo-credential"
    )
    expected = leaf.cert.not_valid_after_utc.timestamp() - time.time()
    assert expiry == pytest.approx(expected, abs=5)


# --- merging workers ---------------------------------------------------------------------------


def worker(snapshot: Snapshot, connections: int) -> Metrics:
    m = Metrics(
        sources=Sources(listener_connections=lambda: {"0.0.0.0_31400": connections}),
    )
    m.set_snapshot(snapshot)
    return m


def test_merge_two_workers_adds_counters_and_buckets(snapshot: Snapshot, tmp_path: Path) -> None:
    a, b = worker(snapshot, 2), worker(snapshot, 5)
    record_sequence(a)
    b.http(V1, EP1, 200, "-", 7.5, 20, 2000)
    b.http(V2, EP2, 200, "-", 1.0, 20, 20)
    b.tcp_close(b.tcp_open(V1, EP1), 10, 20)
    a.tcp_close(a.tcp_open(V1, EP1), 1, 2)
    for i, m in enumerate((a, b)):
        write_state(tmp_path / f"worker-{i}.json", m.state())
    merged = merge_states(read_states(tmp_path))
    s = parse(render_state(merged))
    ok = {"response_code": "200", "destination_version": "v1"}
    assert one(s, "istio_requests_total", **ok) == 4
    assert one(s, "istio_requests_total", destination_version="v2") == 1
    assert one(s, "istio_request_duration_milliseconds_bucket", le="10", **ok) == 3
    assert one(s, "istio_request_duration_milliseconds_sum", **ok) == pytest.approx(4014.8)
    assert one(s, "istio_response_bytes_bucket", le="10000", **ok) == 3
    assert one(s, "istio_tcp_sent_bytes_total", response_flags="-") == 11
    assert one(s, "istio_tcp_connections_closed_total", response_flags="-") == 2
    assert one(s, "isthmus_listener_active_connections", listener="0.0.0.0_31400") == 7
    assert one(s, "isthmus_build_info") == 1


def test_merge_drops_gauges_of_stale_workers_but_keeps_their_counts(snapshot: Snapshot) -> None:
    a, b = worker(snapshot, 2), worker(snapshot, 5)
    a.http(V1, EP1, 200, "-", 1.0, 1, 1)
    b.http(V1, EP1, 200, "-", 1.0, 1, 1)
    now = time.time()
    old = b.state(now - 60)
    merged = merge_states([a.state(now), old], now=now, max_gauge_age=10)
    s = parse(render_state(merged))
    assert one(s, "istio_requests_total") == 2
    assert one(s, "isthmus_listener_active_connections", listener="0.0.0.0_31400") == 2


def test_merge_combines_gauges_by_their_rule(snapshot: Snapshot) -> None:
    def with_cert(not_after: float) -> MetricsState:
        m = Metrics(sources=Sources(certificates=lambda: {"kubernetes://c": not_after}))
        m.set_snapshot(snapshot)
        return m.state(now=1000.0)

    merged = merge_states([with_cert(5000.0), with_cert(2000.0)], now=1000.0)
    s = parse(render_state(merged))
    assert one(s, "isthmus_certificate_expiry_seconds", credential="kubernetes://c") == 1000.0
    assert one(s, "isthmus_config_info", version=snapshot.version) == 1


def test_merge_refuses_different_buckets(snapshot: Snapshot) -> None:
    a = Metrics()
    b = Metrics(duration_buckets=(1, 2, 3))
    with pytest.raises(ValueError, match="different histogram buckets"):
        merge_states([a.state(), b.state()])


def test_recording_is_cheap(metrics: Metrics) -> None:
    n = 20000
    metrics.http(V1, EP1, 200, "-", 3.0, 300, 3000)
    start = time.perf_counter()
    for _ in range(n):
        metrics.http(V1, EP1, 200, "-", 3.0, 300, 3000)
    per_request = (time.perf_counter() - start) / n * 1e6
    assert per_request < 10, f"{per_request:.2f} µs per request"
