"""Clusters: names, endpoints from every source, subsets, DestinationRule policies."""

from __future__ import annotations

import pytest

from isthmus.snapshot import Call
from isthmus.snapshot.types import Cluster
from tests.translate.util import build, gateway, http_vs, route, service, workload


def only_cluster(yaml: str, dest: str = "{host: svc, port: {number: 80}}") -> Cluster:
    rules = f"- route:\n  - destination: {dest}"
    result = route(gateway() + http_vs(rules=rules) + yaml, Call(80, host="x"))
    assert result.outcome == "routed", result.reason
    (cluster,) = result.clusters
    return cluster


def test_cluster_name_and_workload_entry_endpoints_use_target_port() -> None:
    yaml = service("svc", port=80, target=8080) + workload("w", "10.0.0.1", "app: svc")
    cluster = only_cluster(yaml)
    assert cluster.name == "outbound|80||svc.default.svc.cluster.local"
    assert [(e.address, e.port) for e in cluster.endpoints] == [("10.0.0.1", 8080)]
    assert cluster.type == "EDS"


def test_workload_entry_ports_map_the_service_port_name() -> None:
    yaml = (
        service("svc", port=80, target=8080)
        + """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: w, namespace: default}
spec: {address: 10.0.0.1, labels: {app: svc}, ports: {http: 9999}}
"""
    )
    assert [e.port for e in only_cluster(yaml).endpoints] == [9999]


def test_workload_entry_in_another_namespace_is_not_selected() -> None:
    yaml = service("svc", port=80) + workload("w", "10.0.0.1", "app: svc", namespace="other")
    assert only_cluster(yaml).endpoints == ()


def test_endpoints_resource_wins_over_selector() -> None:
    yaml = (
        service("svc", port=80, selector="")
        + workload("w", "10.0.0.1", "app: svc")
        + """
---
apiVersion: v1
kind: Endpoints
metadata: {name: svc, namespace: default}
subsets:
- addresses: [{ip: 10.0.0.7}, {ip: 10.0.0.8}]
  ports: [{name: http, port: 7000}]
"""
    )
    cluster = only_cluster(yaml)
    assert [e.key for e in cluster.endpoints] == ["10.0.0.7:7000", "10.0.0.8:7000"]
    assert [str(e.origin) for e in cluster.endpoints] == ["Endpoints default/svc"] * 2


def test_endpoint_slice_ready_endpoints_only() -> None:
    yaml = (
        service("svc", port=80, selector="")
        + """
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-abc
  namespace: default
  labels: {kubernetes.io/service-name: svc}
addressType: IPv4
ports: [{name: http, port: 7001}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {ready: true}
- addresses: [10.1.0.2]
  conditions: {ready: false}
"""
    )
    assert [e.key for e in only_cluster(yaml).endpoints] == ["10.1.0.1:7001"]


def test_pods_with_pod_ip_and_named_target_port() -> None:
    yaml = """
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  selector: {app: svc}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Pod
metadata: {name: svc-1, namespace: default, labels: {app: svc, version: v1}}
spec:
  containers: [{name: app, image: x, ports: [{name: web, containerPort: 8088}]}]
status: {podIP: 10.2.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: svc-2, namespace: default, labels: {app: svc}}
spec: {containers: [{name: app, image: x}]}
status: {phase: Pending}
"""
    cluster = only_cluster(yaml)
    assert [(e.key, dict(e.labels)) for e in cluster.endpoints] == [
        ("10.2.0.1:8088", {"app": "svc", "version": "v1"})
    ]


def test_external_name_resolves_at_connect_time() -> None:
    yaml = """
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: http, port: 80}]
"""
    cluster = only_cluster(yaml)
    assert cluster.type == "STRICT_DNS"
    assert [(e.address, e.port, e.resolve) for e in cluster.endpoints] == [("localhost", 80, True)]


@pytest.mark.parametrize(
    ("resolution", "endpoints", "ctype", "expected"),
    [
        (
            "STATIC",
            "[{address: 10.3.0.1}, {address: 10.3.0.2, ports: {https: 8443}}]",
            "STATIC",
            [("10.3.0.1", 443, False), ("10.3.0.2", 8443, False)],
        ),
        ("DNS", "[]", "STRICT_DNS", [("api.example.com", 443, True)]),
        (
            "DNS_ROUND_ROBIN",
            "[{address: lb.example.com}]",
            "LOGICAL_DNS",
            [("lb.example.com", 443, True)],
        ),
        ("NONE", "[]", "ORIGINAL_DST", []),
    ],
)
def test_service_entry_resolution(
    resolution: str, endpoints: str, ctype: str, expected: list[tuple[str, int, bool]]
) -> None:
    yaml = f"""
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  ports: [{{number: 443, name: https, protocol: TLS}}]
  location: MESH_EXTERNAL
  resolution: {resolution}
  endpoints: {endpoints}
"""
    cluster = only_cluster(yaml, "{host: api.example.com, port: {number: 443}}")
    assert cluster.type == ctype
    assert [(e.address, e.port, e.resolve) for e in cluster.endpoints] == expected


DR = """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s, tcpKeepalive: {time: 60s}}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 5}
    outlierDetection: {consecutive5xxErrors: 3, baseEjectionTime: 15s}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {useSourceIp: true}
  - name: v2
    labels: {version: v2}
"""
WORKLOADS = (
    service("svc", port=80)
    + workload("a", "10.0.0.1", "app: svc, version: v1")
    + workload("b", "10.0.0.2", "app: svc, version: v2")
)


def test_subsets_select_endpoints_and_policies_layer() -> None:
    v1 = only_cluster(WORKLOADS + DR, "{host: svc, subset: v1, port: {number: 80}}")
    v2 = only_cluster(WORKLOADS + DR, "{host: svc, subset: v2, port: {number: 80}}")
    assert [e.address for e in v1.endpoints] == ["10.0.0.1"]
    assert [e.address for e in v2.endpoints] == ["10.0.0.2"]
    assert v1.load_balancer.simple == "RING_HASH" and v1.load_balancer.hash_source_ip
    assert v2.load_balancer.simple == "RANDOM"  # port level overrides the top level
    pool = v2.connection_pool
    assert (pool.max_connections, pool.connect_timeout) == (100, 2.0)
    assert pool.tcp_keepalive is not None and pool.tcp_keepalive.time == 60.0
    assert (pool.http1_max_pending_requests, pool.max_requests_per_connection) == (10, 5)
    assert v2.outlier_detection is not None
    assert v2.outlier_detection.consecutive_5xx == 3
    assert v2.outlier_detection.base_ejection_time == 15.0
    assert v2.outlier_detection.max_ejection_percent == 10
    assert str(v2.policy_origin) == "DestinationRule default/svc"


def test_defaults_without_destination_rule() -> None:
    cluster = only_cluster(WORKLOADS)
    assert cluster.load_balancer.simple == "LEAST_REQUEST"
    assert cluster.connection_pool.connect_timeout == 10.0
    assert cluster.connection_pool.idle_timeout == 3600.0
    assert cluster.outlier_detection is None and cluster.tls is None


def test_destination_rule_in_gateway_namespace_wins() -> None:
    gw_dr = (
        DR.replace("namespace: default", "namespace: istio-system")
        .replace("host: svc", "host: svc.default.svc.cluster.local")
        .replace("simple: ROUND_ROBIN", "simple: LEAST_REQUEST")
        .replace("simple: RANDOM", "simple: LEAST_REQUEST")
    )
    gw_dr = gw_dr.replace("name: svc,", "name: svc-from-gateway-ns,")
    cluster = only_cluster(WORKLOADS + DR + gw_dr)
    assert str(cluster.policy_origin) == "DestinationRule istio-system/svc-from-gateway-ns"


def test_upstream_tls_settings() -> None:
    dr = """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc.default.svc.cluster.local
  trafficPolicy:
    tls: {mode: DISABLE}
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE, sni: backend.internal, subjectAltNames: [backend.internal]}
"""
    cluster = only_cluster(WORKLOADS + dr)
    assert cluster.tls is not None
    assert (cluster.tls.mode, cluster.tls.sni) == ("SIMPLE", "backend.internal")


def test_missing_host_is_reported() -> None:
    rules = "- route:\n  - destination: {host: nowhere, port: {number: 80}}"
    _snap, diags = build(gateway() + http_vs(rules=rules))
    assert [d.message for d in diags] == [
        'Referenced host not found: "nowhere.default.svc.cluster.local"'
    ]
