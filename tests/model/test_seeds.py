"""Every seed fixture loads cleanly, with the expected resources and notes for ignored kinds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from isthmus.model import LoadResult, load

from .helpers import SEEDS, find

IGNORED = "ignored (not used by a gateway)"

# (seed directory, [(ref, file relative to the directory, line)], [(level, file, line, message)])
SEED_CASES = [
    pytest.param(
        "000",
        [
            ("Service istio-system/istio-ingressgateway", "istio-ingressgateway-service.yaml", 1),
            ("Gateway istio-system/tcp-ingress-gateway", "tcp-ingress-gateway.yaml", 1),
            ("Service default/tcp-service", "tcp-service.yaml", 1),
            ("VirtualService default/tcp-virtual-service", "tcp-virtual-service.yaml", 1),
        ],
        [],
        id="000",
    ),
    pytest.param(
        "001",
        [
            ("Service default/tcp-echo", "tcp-echo.yaml", 41),
            ("Gateway default/tcp-echo-gateway", "tcp-echo.yaml", 54),
            ("VirtualService default/tcp-echo", "tcp-echo.yaml", 71),
            ("DestinationRule default/tcp-echo-destination", "tcp-echo.yaml", 99),
        ],
        [
            ("info", "tcp-echo.yaml", 1, f"Deployment default/tcp-echo-v1: {IGNORED}"),
            ("info", "tcp-echo.yaml", 21, f"Deployment default/tcp-echo-v2: {IGNORED}"),
        ],
        id="001",
    ),
    pytest.param(
        "002",
        [
            ("Service default/my-httpbin", "externalname.yaml", 1),
            ("DestinationRule default/my-httpbin", "externalname.yaml", 13),
            ("Service default/my-wikipedia", "wikipedia.yaml", 1),
            ("Endpoints default/my-wikipedia", "wikipedia.yaml", 11),
            ("DestinationRule default/my-wikipedia", "wikipedia.yaml", 23),
        ],
        [],
        id="002",
    ),
    pytest.param(
        "003",
        [
            ("Gateway default/gateway", "gateway.yaml", 1),
            ("Service istio-ingress/istio-ingressgateway", "ingress.yaml", 1),
        ],
        [
            (
                "info",
                "canary-deployment.yaml",
                1,
                f"Deployment istio-ingress/istio-ingressgateway-canary: {IGNORED}",
            ),
            ("info", "ingress-operator.yaml", 1, f"IstioOperator default/ingress: {IGNORED}"),
            (
                "info",
                "ingress.yaml",
                16,
                f"Deployment istio-ingress/istio-ingressgateway: {IGNORED}",
            ),
            ("info", "ingress.yaml", 53, f"Role istio-ingress/istio-ingressgateway-sds: {IGNORED}"),
            (
                "info",
                "ingress.yaml",
                63,
                f"RoleBinding istio-ingress/istio-ingressgateway-sds: {IGNORED}",
            ),
        ],
        id="003",
    ),
    pytest.param(
        "004/v1-wildcard",
        [
            ("Gateway default/bookinfo-gateway", "gateway.yaml", 1),
            ("VirtualService default/bookinfo", "virtualservice.yaml", 1),
        ],
        [],
        id="004-v1-wildcard",
    ),
    pytest.param(
        "004/v2-host",
        [
            ("Gateway default/bookinfo-gateway", "bookinfo.yaml", 1),
            ("VirtualService default/bookinfo", "bookinfo.yaml", 16),
        ],
        [],
        id="004-v2-host",
    ),
    pytest.param(
        "004/v3-https",
        [
            ("Gateway default/bookinfo-gateway", "bookinfo.yaml", 1),
            ("VirtualService default/bookinfo", "bookinfo.yaml", 27),
        ],
        [],
        id="004-v3-https",
    ),
]


def load_seed(name: str) -> LoadResult:
    return load([str(SEEDS / name)])


def test_every_seed_directory_is_covered() -> None:
    covered = {p.values[0] for p in SEED_CASES}
    on_disk = set()
    for root, _dirs, files in os.walk(SEEDS):
        if any(f.endswith((".yaml", ".yml")) for f in files):
            on_disk.add(Path(root).relative_to(SEEDS).as_posix())
    assert on_disk == covered


@pytest.mark.parametrize(("seed", "expected_refs", "expected_notes"), SEED_CASES)
def test_seed_loads_without_errors(
    seed: str,
    expected_refs: list[tuple[str, str, int]],
    expected_notes: list[tuple[str, str, int, str]],
) -> None:
    root = SEEDS / seed
    result = load([str(root)])
    assert [str(e) for e in result.errors] == []
    assert [
        (str(o.ref), os.path.relpath(o.ref.file, root), o.ref.line) for o in result.resources.all()
    ] == expected_refs
    assert [
        (n.level, os.path.relpath(n.file, root), n.line, n.message) for n in result.notes
    ] == expected_notes


def test_seed_000_values() -> None:
    res = load_seed("000").resources
    gw = find(res, "Gateway", "istio-system", "tcp-ingress-gateway")
    (server,) = gw.spec.servers
    assert (server.port.number, server.port.name, server.port.protocol) == (31400, "tcp", "TCP")
    assert server.hosts == ["*"]
    assert gw.spec.selector == {"istio": "ingressgateway"}
    vs = find(res, "VirtualService", "default", "tcp-virtual-service")
    assert vs.spec.gateways == ["tcp-ingress-gateway"]
    (tcp,) = vs.spec.tcp
    assert tcp.match[0].port == 31400
    assert tcp.route[0].destination.host == "tcp-service"
    assert tcp.route[0].destination.port.number == 8080  # the documented port mistake
    svc = find(res, "Service", "default", "tcp-service")
    assert [(p.port, p.target_port, p.protocol) for p in svc.spec.ports] == [(31400, 8080, "TCP")]
    ingress = find(res, "Service", "istio-system", "istio-ingressgateway")
    assert ingress.spec.selector is None
    assert [(p.name, p.port, p.target_port) for p in ingress.spec.ports] == [
        ("http2", 80, 80),
        ("https", 443, 443),
        ("tcp", 31400, 31400),
    ]


def test_seed_001_values() -> None:
    res = load_seed("001").resources
    vs = find(res, "VirtualService", "default", "tcp-echo")
    (tcp,) = vs.spec.tcp
    assert [(r.destination.subset, r.weight) for r in tcp.route] == [("v1", 80), ("v2", 20)]
    assert {r.destination.port.number for r in tcp.route} == {9000}
    dr = find(res, "DestinationRule", "default", "tcp-echo-destination")
    assert dr.spec.host == "tcp-echo"
    assert [(s.name, s.labels) for s in dr.spec.subsets] == [
        ("v1", {"version": "v1"}),
        ("v2", {"version": "v2"}),
    ]
    svc = find(res, "Service", "default", "tcp-echo")
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [("tcp", 9000, None)]
    # the blank line inside the port mapping does not split it
    port = find(res, "Gateway", "default", "tcp-echo-gateway").spec.servers[0].port
    assert (port.number, port.name, port.protocol) == (31400, "tcp", "TCP")


def test_seed_002_values() -> None:
    res = load_seed("002").resources
    httpbin = find(res, "Service", "default", "my-httpbin")
    assert httpbin.spec.type == "ExternalName"
    assert httpbin.spec.external_name == "httpbin.org"
    wikipedia = find(res, "Service", "default", "my-wikipedia")
    assert wikipedia.spec.selector is None
    endpoints = find(res, "Endpoints", "default", "my-wikipedia")
    (subset,) = endpoints.subsets
    assert [a.ip for a in subset.addresses] == ["198.35.26.96", "208.80.153.224"]
    assert [(p.name, p.port) for p in subset.ports] == [("tls", 443)]
    for name in ("my-httpbin", "my-wikipedia"):
        dr = find(res, "DestinationRule", "default", name)
        assert dr.spec.host == f"{name}.default.svc.cluster.local"
        assert dr.spec.traffic_policy.tls.mode == "DISABLE"


def test_seed_003_values() -> None:
    res = load_seed("003").resources
    gw = find(res, "Gateway", "default", "gateway")
    # the page elides the servers with "...", a document-end marker: only the selector is left
    assert gw.spec.servers == []
    assert gw.spec.selector == {"istio": "ingressgateway"}
    svc = find(res, "Service", "istio-ingress", "istio-ingressgateway")
    assert svc.spec.type == "LoadBalancer"
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [
        ("http", 80, None),
        ("https", 443, None),
    ]


@pytest.mark.parametrize(
    ("seed", "hosts", "api_version"),
    [
        ("004/v1-wildcard", ["*"], "networking.istio.io/v1beta1"),
        ("004/v2-host", ["bookinfo.example.com"], "networking.istio.io/v1alpha3"),
        ("004/v3-https", ["bookinfo.example.com"], "networking.istio.io/v1alpha3"),
    ],
)
def test_seed_004_virtual_service(seed: str, hosts: list[str], api_version: str) -> None:
    res = load_seed(seed).resources
    vs = find(res, "VirtualService", "default", "bookinfo")
    assert vs.api_version == api_version
    assert vs.spec.hosts == hosts
    assert vs.spec.gateways == ["bookinfo-gateway"]
    (http,) = vs.spec.http
    assert [(m.uri.exact, m.uri.prefix) for m in http.match] == [
        ("/productpage", None),
        (None, "/static"),
        ("/login", None),
        ("/logout", None),
        (None, "/api/v1/products"),
    ]
    (route,) = http.route
    assert (route.destination.host, route.destination.port.number) == ("productpage", 9080)
    gw = find(res, "Gateway", "default", "bookinfo-gateway")
    assert gw.spec.servers[0].hosts == hosts
    assert gw.spec.servers[0].port.number == 80


def test_seed_004_v3_https_redirect_and_credential() -> None:
    gw = find(load_seed("004/v3-https").resources, "Gateway", "default", "bookinfo-gateway")
    http, https = gw.spec.servers
    assert http.tls is not None and http.tls.https_redirect is True
    assert (https.port.number, https.port.protocol) == (443, "HTTPS")
    assert https.tls is not None
    assert (https.tls.mode, https.tls.credential_name) == ("SIMPLE", "bookinfo-credential")


def test_seed_004_as_a_whole_keeps_the_last_variant() -> None:
    root = SEEDS / "004"
    result = load([str(root)])
    assert result.errors == []
    later = "the later definition is used, as kubectl apply would"
    assert [(n.level, os.path.relpath(n.file, root), n.line, n.message) for n in result.notes] == [
        (
            "warning",
            "v2-host/bookinfo.yaml",
            1,
            "Gateway default/bookinfo-gateway is defined again "
            f"(previously at {root}/v1-wildcard/gateway.yaml:1); {later}",
        ),
        (
            "warning",
            "v2-host/bookinfo.yaml",
            16,
            "VirtualService default/bookinfo is defined again "
            f"(previously at {root}/v1-wildcard/virtualservice.yaml:1); {later}",
        ),
        (
            "warning",
            "v3-https/bookinfo.yaml",
            1,
            "Gateway default/bookinfo-gateway is defined again "
            f"(previously at {root}/v2-host/bookinfo.yaml:1); {later}",
        ),
        (
            "warning",
            "v3-https/bookinfo.yaml",
            27,
            "VirtualService default/bookinfo is defined again "
            f"(previously at {root}/v2-host/bookinfo.yaml:16); {later}",
        ),
    ]
    gateways = result.resources.gateways
    assert len(gateways) == 1
    assert gateways[0].ref.file.endswith("v3-https/bookinfo.yaml")
    assert len(gateways[0].spec.servers) == 2


def test_all_seeds_together() -> None:
    result = load([str(SEEDS)])
    assert result.errors == []
    kinds = sorted(o.kind for o in result.resources.all())
    # 000: 2 Services, Gateway, VS; 001: Service, Gateway, VS, DR; 002: 2 Services, Endpoints,
    # 2 DRs; 003: Gateway, Service; 004: Gateway, VS (three variants of the same two)
    assert kinds.count("Service") == 6
    assert kinds.count("Gateway") == 4
    assert kinds.count("VirtualService") == 3
    assert kinds.count("DestinationRule") == 3
    assert kinds.count("Endpoints") == 1
    assert sum(n.level == "info" for n in result.notes) == 7
