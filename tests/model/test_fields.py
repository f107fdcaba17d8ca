"""Every field the model defines loads, and the typed values are what the YAML says."""

from __future__ import annotations

import pytest

from isthmus.model import (
    DestinationRule,
    Endpoints,
    EndpointSlice,
    Gateway,
    LoadResult,
    Pod,
    Secret,
    Service,
    ServiceEntry,
    VirtualService,
    WorkloadEntry,
    load,
)

from .helpers import MODEL_DATA, find, load_ok


@pytest.fixture(scope="module")
def loaded() -> LoadResult:
    return load([str(MODEL_DATA)])


def test_model_fixtures_load_without_errors_or_notes(loaded: LoadResult) -> None:
    assert [str(e) for e in loaded.errors] == []
    assert [str(n) for n in loaded.notes] == []
    assert sorted(str(o.ref) for o in loaded.resources.all()) == sorted(
        [
            "DestinationRule bookinfo/reviews",
            "Gateway istio-system/full-gateway",
            "Gateway istio-system/edge",
            "VirtualService istio-system/edge-routes",
            "VirtualService bookinfo/reviews",
            "ServiceEntry egress/external-api",
            "ServiceEntry egress/selected",
            "WorkloadEntry egress/vm-1",
            "Service istio-system/istio-ingressgateway",
            "Service shop/web",
            "Service shop/web-nodeport",
            "Service shop/web-lb",
            "Service shop/upstream",
            "Service shop/headless",
            "Service shop/manual",
            "Endpoints shop/manual",
            "EndpointSlice shop/web-abc12",
            "Pod shop/web-0",
            "Secret istio-system/web-cert",
            "Secret istio-system/web-cert-plain",
        ]
    )


# Gateway ---------------------------------------------------------------------------------------


def test_gateway_metadata_and_selector(loaded: LoadResult) -> None:
    gw = find(loaded.resources, "Gateway", "istio-system", "full-gateway")
    assert isinstance(gw, Gateway)
    assert gw.api_version == "networking.istio.io/v1"
    assert gw.labels == {"app": "edge", "version": "2"}
    assert gw.metadata.annotations == {"owner": "team-a"}
    assert gw.spec.selector == {"istio": "ingressgateway", "revision": "1"}
    assert [s.port.number for s in gw.spec.servers] == [80, 443, 8443, 9443, 15443, 31400]
    assert [s.port.protocol for s in gw.spec.servers] == [
        "HTTP",
        "HTTPS",
        "HTTPS",
        "HTTPS",
        "TLS",
        "TCP",
    ]
    assert gw.ref.location.endswith("gateway-full.yaml:2")


def test_gateway_http_server_with_redirect(loaded: LoadResult) -> None:
    server = find(loaded.resources, "Gateway", "istio-system", "full-gateway").spec.servers[0]
    assert server.name == "http-redirect"
    assert (server.port.number, server.port.name, server.port.protocol) == (80, "http", "HTTP")
    assert server.port.target_port == 8080
    assert server.bind == "0.0.0.0"
    assert server.hosts == ["shop/*.example.com", "*/api.example.com"]
    assert server.default_endpoint == "127.0.0.1:8080"
    assert server.tls is not None
    assert server.tls.https_redirect is True
    # defaults of the rest of the TLS settings
    assert server.tls.mode == "PASSTHROUGH"
    assert server.tls.credential_name is None
    assert server.tls.min_protocol_version == "TLS_AUTO"
    assert server.tls.max_protocol_version == "TLS_AUTO"
    assert server.tls.cipher_suites == []


def test_gateway_simple_tls_server(loaded: LoadResult) -> None:
    server = find(loaded.resources, "Gateway", "istio-system", "full-gateway").spec.servers[1]
    tls = server.tls
    assert server.hosts == ["*.example.com"]
    assert server.bind is None
    assert tls.https_redirect is False
    assert tls.mode == "SIMPLE"
    assert tls.credential_name == "example-cert"
    assert tls.min_protocol_version == "TLSV1_2"
    assert tls.max_protocol_version == "TLSV1_3"
    assert tls.cipher_suites == ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"]
    assert tls.server_certificate is None


def test_gateway_mutual_tls_server_with_files(loaded: LoadResult) -> None:
    server = find(loaded.resources, "Gateway", "istio-system", "full-gateway").spec.servers[2]
    tls = server.tls
    assert server.name is None
    assert tls.mode == "MUTUAL"
    assert tls.server_certificate == "/etc/certs/server.pem"
    assert tls.private_key == "/etc/certs/key.pem"
    assert tls.ca_certificates == "/etc/certs/ca.pem"
    assert tls.ca_crl == "/etc/certs/crl.pem"
    assert tls.subject_alt_names == ["spiffe://cluster.local/ns/default/sa/client"]
    assert tls.verify_certificate_spki == ["abc="]
    assert tls.verify_certificate_hash == ["AB:CD"]


def test_gateway_server_with_several_credentials(loaded: LoadResult) -> None:
    tls = find(loaded.resources, "Gateway", "istio-system", "full-gateway").spec.servers[3].tls
    assert tls.mode == "OPTIONAL_MUTUAL"
    assert tls.credential_names == ["rsa-cert", "ecdsa-cert"]
    (cert,) = tls.tls_certificates
    assert (cert.server_certificate, cert.private_key, cert.ca_certificates) == (
        "/a/cert.pem",
        "/a/key.pem",
        "/a/ca.pem",
    )


def test_gateway_passthrough_and_plain_tcp_servers(loaded: LoadResult) -> None:
    servers = find(loaded.resources, "Gateway", "istio-system", "full-gateway").spec.servers
    assert servers[4].tls.mode == "PASSTHROUGH"
    assert servers[4].hosts == ["*"]
    assert servers[5].tls is None
    assert servers[5].port.name == "tcp"
    assert servers[5].port.target_port is None


def test_gateway_defaults() -> None:
    result = load_ok(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: bare}
        """
    )
    gw = result.resources.gateways[0]
    assert gw.spec.servers == []
    assert gw.spec.selector is None
    assert gw.labels == {}


# VirtualService --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vs(loaded: LoadResult) -> VirtualService:
    found = find(loaded.resources, "VirtualService", "bookinfo", "reviews")
    assert isinstance(found, VirtualService)
    return found


def test_virtualservice_top_level(vs: VirtualService) -> None:
    assert vs.api_version == "networking.istio.io/v1beta1"
    assert vs.spec.hosts == ["reviews.example.com", "reviews"]
    assert vs.spec.gateways == ["istio-system/full-gateway", "mesh"]
    assert vs.spec.export_to == [".", "istio-system"]
    assert [h.name for h in vs.spec.http] == [
        "full-match",
        "regex-rewrite",
        "redirect",
        "derive-port",
        "direct",
        "direct-bytes",
        "delegated",
        "legacy",
    ]
    assert len(vs.spec.tls) == 1
    assert len(vs.spec.tcp) == 1


def test_virtualservice_http_match(vs: VirtualService) -> None:
    (match,) = vs.spec.http[0].match
    assert match.name == "first"
    assert match.uri is not None and match.uri.prefix == "/api/"
    assert match.uri.exact is None and match.uri.regex is None
    assert match.scheme is not None and match.scheme.exact == "https"
    assert match.method is not None and match.method.regex == "GET|HEAD"
    assert match.authority is not None and match.authority.exact == "reviews.example.com"
    assert set(match.headers) == {"end-user", "x-present"}
    assert match.headers["end-user"].exact == "jason"
    present = match.headers["x-present"]
    assert (present.exact, present.prefix, present.regex) == (None, None, None)
    assert match.query_params["debug"].exact == "1"
    assert match.without_headers["x-skip"].prefix == "yes"
    assert match.port == 443
    assert match.ignore_uri_case is True
    assert match.gateways == ["istio-system/full-gateway"]
    assert match.source_labels == {"app": "productpage", "version": "1"}
    assert match.source_namespace == "bookinfo"
    assert match.stat_prefix == "api"


def test_virtualservice_http_route_destinations(vs: VirtualService) -> None:
    first, second = vs.spec.http[0].route
    assert first.destination.host == "reviews.bookinfo.svc.cluster.local"
    assert first.destination.subset == "v2"
    assert first.destination.port is not None and first.destination.port.number == 9080
    assert first.weight == 75
    assert first.headers is not None
    assert first.headers.request is not None
    assert first.headers.request.set == {"x-route": "v2"}
    assert first.headers.request.add == {}
    assert first.headers.response is not None
    assert first.headers.response.remove == ["x-internal"]
    assert (second.destination.host, second.destination.subset, second.weight) == (
        "reviews",
        "v3",
        25,
    )
    assert second.destination.port is None
    assert second.headers is None


def test_virtualservice_http_rewrite_timeout_retries(vs: VirtualService) -> None:
    http = vs.spec.http[0]
    assert http.rewrite is not None
    assert (http.rewrite.uri, http.rewrite.authority) == ("/v2/", "reviews.internal")
    assert http.rewrite.uri_regex_rewrite is None
    assert http.timeout == 10.0
    retries = http.retries
    assert retries is not None
    assert retries.attempts == 3
    assert retries.per_try_timeout == 2.0
    assert retries.retry_on == "gateway-error,connect-failure,refused-stream"
    assert retries.retry_remote_localities is True
    assert retries.retry_ignore_previous_hosts is False
    assert retries.backoff == pytest.approx(0.025)


def test_virtualservice_http_fault(vs: VirtualService) -> None:
    fault = vs.spec.http[0].fault
    assert fault is not None and fault.delay is not None and fault.abort is not None
    assert fault.delay.fixed_delay == 5.0
    assert fault.delay.percentage is not None
    assert fault.delay.percentage.value == pytest.approx(0.1)
    assert fault.delay.exponential_delay is None
    assert fault.abort.http_status == 503
    assert fault.abort.percentage is not None
    assert fault.abort.percentage.value == 12.5
    legacy = vs.spec.http[7].fault
    assert legacy is not None and legacy.delay is not None and legacy.abort is not None
    assert legacy.delay.exponential_delay == 90.0
    assert legacy.delay.percent == 5
    assert legacy.abort.grpc_status == "UNAVAILABLE"
    assert legacy.abort.http_status is None


def test_virtualservice_http_mirrors(vs: VirtualService) -> None:
    http = vs.spec.http[0]
    assert http.mirror is not None
    assert (http.mirror.host, http.mirror.subset) == ("mirror.example.com", "shadow")
    assert http.mirror.port is not None and http.mirror.port.number == 8080
    assert http.mirror_percentage is not None and http.mirror_percentage.value == 50.0
    assert [m.destination.host for m in http.mirrors] == ["shadow-a", "shadow-b"]
    assert http.mirrors[0].percentage is not None
    assert http.mirrors[0].percentage.value == 10.0
    assert http.mirrors[1].percentage is None
    legacy = vs.spec.http[7]
    assert legacy.mirror is not None and legacy.mirror.host == "legacy-mirror"
    assert legacy.mirror_percent == 20


def test_virtualservice_http_cors_and_headers(vs: VirtualService) -> None:
    http = vs.spec.http[0]
    cors = http.cors_policy
    assert cors is not None
    assert [o.exact for o in cors.allow_origins] == ["https://example.com", None]
    assert cors.allow_origins[1].regex == r"https://.*\.example\.org"
    assert cors.allow_methods == ["GET", "POST"]
    assert cors.allow_headers == ["x-custom"]
    assert cors.expose_headers == ["x-trace"]
    assert cors.max_age == 86400.0
    assert cors.allow_credentials is True
    assert cors.unmatched_preflights == "IGNORE"
    assert http.headers is not None
    assert http.headers.request is not None
    assert http.headers.request.add == {"x-via": "isthmus"}
    assert http.headers.request.remove == ["cookie"]
    assert http.headers.response is not None
    assert http.headers.response.set == {"cache-control": "no-store"}


def test_virtualservice_uri_regex_rewrite(vs: VirtualService) -> None:
    http = vs.spec.http[1]
    assert http.match[0].uri is not None
    assert http.match[0].uri.regex == "^/service/([^/]+)(/.*)$"
    assert http.rewrite is not None and http.rewrite.uri_regex_rewrite is not None
    assert http.rewrite.uri_regex_rewrite.match == "^/service/([^/]+)(/.*)$"
    assert http.rewrite.uri_regex_rewrite.rewrite == r"\2/instance/\1"
    assert http.rewrite.uri is None


def test_virtualservice_redirects(vs: VirtualService) -> None:
    redirect = vs.spec.http[2].redirect
    assert redirect is not None
    assert redirect.uri == "/new"
    assert redirect.authority == "new.example.com"
    assert redirect.port == 8443
    assert redirect.scheme == "https"
    assert redirect.redirect_code == 308
    assert redirect.derive_port is None
    assert vs.spec.http[2].route == []
    derived = vs.spec.http[3].redirect
    assert derived is not None
    assert derived.derive_port == "FROM_REQUEST_PORT"
    assert derived.redirect_code == 301  # the default
    assert derived.port is None


def test_virtualservice_direct_response_and_delegate(vs: VirtualService) -> None:
    direct = vs.spec.http[4].direct_response
    assert direct is not None and direct.status == 200
    assert direct.body is not None and direct.body.string == "ok"
    assert direct.body.bytes is None
    raw = vs.spec.http[5].direct_response
    assert raw is not None and raw.status == 418
    assert raw.body is not None and raw.body.bytes == "aGVsbG8="
    delegate = vs.spec.http[6].delegate
    assert delegate is not None
    assert (delegate.name, delegate.namespace) == ("delegate-vs", "team-b")


def test_virtualservice_tls_route(vs: VirtualService) -> None:
    (route,) = vs.spec.tls
    (match,) = route.match
    assert match.sni_hosts == ["secure.example.com"]
    assert match.destination_subnets == ["10.0.0.0/8"]
    assert match.port == 443
    assert match.source_labels == {"app": "client"}
    assert match.gateways == ["istio-system/full-gateway"]
    assert match.source_namespace == "bookinfo"
    (dest,) = route.route
    assert dest.destination.host == "secure"
    assert dest.destination.port is not None and dest.destination.port.number == 8443
    assert dest.weight == 100


def test_virtualservice_tcp_route(vs: VirtualService) -> None:
    (route,) = vs.spec.tcp
    (match,) = route.match
    assert match.port == 31400
    assert match.destination_subnets == ["192.168.0.0/16"]
    assert match.source_subnet == "10.1.0.0/16"
    assert match.source_labels == {"app": "tcp-client"}
    assert match.gateways == ["istio-system/full-gateway"]
    assert match.source_namespace == "bookinfo"
    assert [(d.destination.subset, d.weight) for d in route.route] == [("v1", 80), ("v2", 20)]
    assert {d.destination.port.number for d in route.route if d.destination.port} == {9000}


def test_virtualservice_defaults() -> None:
    result = load_ok(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: bare}
        spec:
          http:
          - route:
            - destination: {host: a}
        """
    )
    vs = result.resources.virtual_services[0]
    assert (vs.spec.hosts, vs.spec.gateways, vs.spec.export_to) == ([], [], [])
    assert (vs.spec.tls, vs.spec.tcp) == ([], [])
    http = vs.spec.http[0]
    assert http.match == []
    assert http.name is None
    assert http.timeout is None
    assert http.retries is None
    assert http.route[0].weight is None
    assert http.mirrors == []


def test_virtualservice_field_lines(vs: VirtualService) -> None:
    assert vs.line_of("spec.http[0].retries.perTryTimeout") == 72
    assert vs.line_of("spec.http[0].route[1].weight") == 65
    assert vs.line_of("spec.tcp[0].route[1].weight") == 228


# DestinationRule -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dr(loaded: LoadResult) -> DestinationRule:
    found = find(loaded.resources, "DestinationRule", "bookinfo", "reviews")
    assert isinstance(found, DestinationRule)
    return found


def test_destinationrule_top_level(dr: DestinationRule) -> None:
    assert dr.api_version == "networking.istio.io/v1alpha3"
    assert dr.spec.host == "reviews.bookinfo.svc.cluster.local"
    assert dr.spec.export_to == ["*"]
    assert dr.spec.workload_selector is not None
    assert dr.spec.workload_selector.match_labels == {"app": "gateway"}
    assert [s.name for s in dr.spec.subsets] == ["v1", "v2", "v3", "v4", "v5"]
    assert [s.labels for s in dr.spec.subsets] == [{"version": f"v{i}"} for i in range(1, 6)]
    assert dr.spec.subsets[0].traffic_policy is None


def test_destinationrule_load_balancer(dr: DestinationRule) -> None:
    policy = dr.spec.traffic_policy
    assert policy is not None and policy.load_balancer is not None
    lb = policy.load_balancer
    assert lb.simple == "LEAST_REQUEST"
    assert lb.consistent_hash is None
    assert lb.warmup_duration_secs == 60.0
    locality = lb.locality_lb_setting
    assert locality is not None
    assert locality.enabled is True
    assert locality.distribute[0]["from"] == "us-west/zone1/*"
    assert locality.distribute[0]["to"] == {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
    assert locality.failover == [{"from": "us-east", "to": "eu-west"}]
    assert locality.failover_priority == ["topology.kubernetes.io/region"]


def test_destinationrule_connection_pool(dr: DestinationRule) -> None:
    policy = dr.spec.traffic_policy
    assert policy is not None and policy.connection_pool is not None
    tcp = policy.connection_pool.tcp
    assert tcp is not None
    assert tcp.max_connections == 100
    assert tcp.connect_timeout == pytest.approx(0.03)
    assert tcp.tcp_keepalive is not None
    assert (tcp.tcp_keepalive.probes, tcp.tcp_keepalive.time, tcp.tcp_keepalive.interval) == (
        9,
        7200.0,
        75.0,
    )
    assert tcp.max_connection_duration == 3600.0
    assert tcp.idle_timeout == 5400.0
    http = policy.connection_pool.http
    assert http is not None
    assert http.http1_max_pending_requests == 1024
    assert http.http2_max_requests == 1000
    assert http.max_requests_per_connection == 10
    assert http.max_retries == 3
    assert http.idle_timeout == 90.0
    assert http.h2_upgrade_policy == "UPGRADE"
    assert http.use_client_protocol is True
    assert http.max_concurrent_streams == 256


def test_destinationrule_outlier_detection(dr: DestinationRule) -> None:
    policy = dr.spec.traffic_policy
    assert policy is not None
    od = policy.outlier_detection
    assert od is not None
    assert od.split_external_local_origin_errors is True
    assert od.consecutive_local_origin_failures == 4
    assert od.consecutive_gateway_errors == 5
    assert od.consecutive_5xx_errors == 7
    assert od.consecutive_errors == 6
    assert od.interval == 300.0
    assert od.base_ejection_time == 900.0
    assert od.max_ejection_percent == 100
    assert od.min_health_percent == 50


def test_destinationrule_client_tls(dr: DestinationRule) -> None:
    policy = dr.spec.traffic_policy
    assert policy is not None
    tls = policy.tls
    assert tls is not None
    assert tls.mode == "MUTUAL"
    assert tls.client_certificate == "/etc/certs/client.pem"
    assert tls.private_key == "/etc/certs/client-key.pem"
    assert tls.ca_certificates == "/etc/certs/ca.pem"
    assert tls.ca_crl == "/etc/certs/crl.pem"
    assert tls.subject_alt_names == ["reviews.example.com"]
    assert tls.sni == "reviews.example.com"
    assert tls.insecure_skip_verify is False
    assert tls.credential_name is None


def test_destinationrule_port_level_settings(dr: DestinationRule) -> None:
    policy = dr.spec.traffic_policy
    assert policy is not None
    first, second = policy.port_level_settings
    assert first.port is not None and first.port.number == 80
    assert first.load_balancer is not None and first.load_balancer.simple == "LEAST_CONN"
    assert first.connection_pool is not None and first.connection_pool.tcp is not None
    assert first.connection_pool.tcp.max_connections == 10
    assert first.outlier_detection is not None
    assert first.outlier_detection.consecutive_5xx_errors == 1
    assert first.tls is not None
    assert (first.tls.mode, first.tls.credential_name) == ("SIMPLE", "reviews-client-cert")
    assert second.port is not None and second.port.number == 9080
    assert second.load_balancer is not None
    assert second.load_balancer.simple is None
    assert second.load_balancer.consistent_hash is not None
    assert second.load_balancer.consistent_hash.use_source_ip is True
    assert second.tls is None


def test_destinationrule_subset_policies(dr: DestinationRule) -> None:
    v2, v3, v4, v5 = (s.traffic_policy for s in dr.spec.subsets[1:])
    assert v2 is not None and v2.load_balancer is not None
    assert v2.load_balancer.simple == "ROUND_ROBIN"
    warmup = v2.load_balancer.warmup
    assert warmup is not None
    assert (warmup.duration, warmup.minimum_percent, warmup.aggression) == (30.0, 10.0, 1.5)

    assert v3 is not None and v3.load_balancer is not None
    cookie_hash = v3.load_balancer.consistent_hash
    assert cookie_hash is not None and cookie_hash.http_cookie is not None
    assert cookie_hash.http_cookie.name == "user"
    assert cookie_hash.http_cookie.path == "/"
    assert cookie_hash.http_cookie.ttl == 0.0
    assert cookie_hash.minimum_ring_size == 1024
    assert cookie_hash.use_source_ip is None

    assert v4 is not None and v4.load_balancer is not None
    header_hash = v4.load_balancer.consistent_hash
    assert header_hash is not None
    assert header_hash.http_header_name == "x-user"
    assert header_hash.ring_hash is not None
    assert header_hash.ring_hash.minimum_ring_size == 2048

    assert v5 is not None and v5.load_balancer is not None
    query_hash = v5.load_balancer.consistent_hash
    assert query_hash is not None
    assert query_hash.http_query_parameter_name == "user"
    assert query_hash.maglev is not None and query_hash.maglev.table_size == 65537
    assert v5.tls is not None and v5.tls.mode == "ISTIO_MUTUAL"


def test_destinationrule_tls_mode_defaults_to_disable() -> None:
    result = load_ok(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: dr}
        spec:
          host: a
          trafficPolicy:
            tls: {sni: a.example.com}
        """
    )
    policy = result.resources.destination_rules[0].spec.traffic_policy
    assert policy is not None and policy.tls is not None
    assert policy.tls.mode == "DISABLE"
    assert policy.port_level_settings == []


# ServiceEntry and WorkloadEntry ----------------------------------------------------------------


def test_serviceentry_fields(loaded: LoadResult) -> None:
    se = find(loaded.resources, "ServiceEntry", "egress", "external-api")
    assert isinstance(se, ServiceEntry)
    spec = se.spec
    assert spec.hosts == ["api.example.com", "*.api.example.com"]
    assert spec.addresses == ["240.0.0.1/32"]
    assert [(p.number, p.name, p.protocol) for p in spec.ports] == [
        (443, "https", "TLS"),
        (80, "http", "HTTP"),
        (27017, "mongo", None),
    ]
    assert spec.ports[1].target_port == 8080
    assert spec.ports[0].target_port is None
    assert spec.location == "MESH_INTERNAL"
    assert spec.resolution == "STATIC"
    assert spec.export_to == ["."]
    assert spec.subject_alt_names == ["spiffe://cluster.local/ns/egress/sa/api"]
    assert spec.workload_selector is None
    first, second = spec.endpoints
    assert first.address == "10.1.2.3"
    assert first.ports == {"https": 8443, "http": 8080}
    assert first.labels == {"version": "v1"}
    assert first.network == "net-1"
    assert first.locality == "us-west/zone1/sub"
    assert first.weight == 3
    assert first.service_account == "api-sa"
    assert second.address == "10.1.2.4"
    assert (second.ports, second.labels, second.weight) == ({}, {}, None)


def test_serviceentry_with_workload_selector_and_defaults(loaded: LoadResult) -> None:
    se = find(loaded.resources, "ServiceEntry", "egress", "selected")
    assert se.spec.resolution == "DNS_ROUND_ROBIN"
    assert se.spec.location == "MESH_EXTERNAL"  # the default
    assert se.spec.workload_selector is not None
    assert se.spec.workload_selector.match_labels == {"app": "vm"}
    assert se.spec.endpoints == []
    bare = load_ok(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: bare}
        spec:
          hosts: [a.example.com]
        """
    ).resources.service_entries[0]
    assert (bare.spec.location, bare.spec.resolution) == ("MESH_EXTERNAL", "NONE")


def test_workloadentry_fields(loaded: LoadResult) -> None:
    we = find(loaded.resources, "WorkloadEntry", "egress", "vm-1")
    assert isinstance(we, WorkloadEntry)
    assert we.api_version == "networking.istio.io/v1beta1"
    spec = we.spec
    assert spec.address == "vm-1.example.internal"
    assert spec.ports == {"http": 9080}
    assert spec.labels == {"app": "vm", "instance-id": "7"}
    assert spec.network == "vm-net"
    assert spec.locality == "eu-west/zone-a"
    assert spec.weight == 10
    assert spec.service_account == "vm-sa"


# kubectl get -o yaml ---------------------------------------------------------------------------


def test_kubectl_get_output_loads_with_status_and_server_fields(loaded: LoadResult) -> None:
    gw = find(loaded.resources, "Gateway", "istio-system", "edge")
    meta = gw.metadata
    assert meta.resource_version == "123456"
    assert meta.uid == "0b7e4c5e-3f0a-4a8e-9d1b-2f2b8f6c1a11"
    assert meta.generation == 3
    assert meta.creation_timestamp == "2024-05-01T10:00:00Z"
    assert meta.managed_fields[0]["manager"] == "kubectl-client-side-apply"
    assert "kubectl.kubernetes.io/last-applied-configuration" in meta.annotations
    assert gw.status["conditions"][0]["type"] == "Reconciled"
    assert gw.spec.servers[0].hosts == ["*"]
    assert gw.spec.servers[0].port.number == 80
    assert gw.ref.location.endswith("kubectl-get-output.yaml:4")


def test_kubectl_get_output_other_metadata(loaded: LoadResult) -> None:
    vs = find(loaded.resources, "VirtualService", "istio-system", "edge-routes")
    meta = vs.metadata
    assert (
        meta.self_link
        == "/apis/networking.istio.io/v1/namespaces/istio-system/virtualservices/edge-routes"
    )
    assert meta.finalizers == ["example.com/cleanup"]
    assert meta.owner_references[0]["kind"] == "Deployment"
    assert meta.labels == {"app.kubernetes.io/managed-by": "Helm"}
    assert vs.status == {}
    assert vs.spec.gateways == ["edge"]


def test_kubectl_get_output_service(loaded: LoadResult) -> None:
    svc = find(loaded.resources, "Service", "istio-system", "istio-ingressgateway")
    spec = svc.spec
    assert spec.type == "LoadBalancer"
    assert spec.cluster_ip == "10.96.12.34"
    assert spec.cluster_ips == ["10.96.12.34"]
    assert spec.ip_families == ["IPv4"]
    assert spec.ip_family_policy == "SingleStack"
    assert spec.allocate_load_balancer_node_ports is True
    assert spec.external_traffic_policy == "Cluster"
    assert spec.internal_traffic_policy == "Cluster"
    assert spec.session_affinity == "None"
    assert [(p.name, p.port, p.target_port, p.node_port) for p in spec.ports] == [
        ("status-port", 15021, 15021, 30021),
        ("http2", 80, 8080, 30080),
        ("https", 443, 8443, 30443),
    ]
    assert svc.status["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.10"


# Kubernetes kinds ------------------------------------------------------------------------------


def test_service_cluster_ip_with_named_target_port(loaded: LoadResult) -> None:
    svc = find(loaded.resources, "Service", "shop", "web")
    assert isinstance(svc, Service)
    assert svc.spec.type == "ClusterIP"
    assert svc.spec.cluster_ip == "10.96.0.20"
    assert svc.spec.selector == {"app": "web"}
    http, grpc = svc.spec.ports
    assert (http.name, http.port, http.target_port, http.protocol) == (
        "http",
        80,
        "http-web",
        "TCP",
    )
    assert http.app_protocol == "http"
    assert http.node_port is None
    assert grpc.target_port == 9091  # "9091" is a number, not a port name


def test_service_node_port(loaded: LoadResult) -> None:
    svc = find(loaded.resources, "Service", "shop", "web-nodeport")
    assert svc.spec.type == "NodePort"
    (port,) = svc.spec.ports
    assert (port.port, port.target_port, port.node_port) == (80, 8080, 30080)


def test_service_load_balancer(loaded: LoadResult) -> None:
    spec = find(loaded.resources, "Service", "shop", "web-lb").spec
    assert spec.type == "LoadBalancer"
    assert spec.load_balancer_ip == "203.0.113.7"
    assert spec.load_balancer_source_ranges == ["10.0.0.0/8"]
    assert spec.external_ips == ["198.51.100.1"]
    assert spec.external_traffic_policy == "Local"
    assert spec.health_check_node_port == 32000
    assert spec.session_affinity == "ClientIP"
    assert spec.session_affinity_config == {"clientIP": {"timeoutSeconds": 10800}}
    assert spec.ports[0].target_port == 8443


def test_service_external_name(loaded: LoadResult) -> None:
    spec = find(loaded.resources, "Service", "shop", "upstream").spec
    assert spec.type == "ExternalName"
    assert spec.external_name == "api.example.com"
    assert spec.selector is None
    assert spec.ports[0].target_port is None


def test_service_headless_and_selectorless(loaded: LoadResult) -> None:
    headless = find(loaded.resources, "Service", "shop", "headless").spec
    assert headless.cluster_ip == "None"
    assert headless.publish_not_ready_addresses is True
    manual = find(loaded.resources, "Service", "shop", "manual").spec
    assert manual.selector is None
    assert manual.type == "ClusterIP"
    assert manual.cluster_ip is None
    assert [(p.port, p.target_port) for p in manual.ports] == [(8080, 80)]


def test_endpoints(loaded: LoadResult) -> None:
    ep = find(loaded.resources, "Endpoints", "shop", "manual")
    assert isinstance(ep, Endpoints)
    (subset,) = ep.subsets
    (address,) = subset.addresses
    assert (address.ip, address.hostname, address.node_name) == ("10.1.0.5", "manual-0", "node-a")
    assert address.target_ref is not None
    assert (address.target_ref.kind, address.target_ref.name) == ("Pod", "manual-0")
    assert [a.ip for a in subset.not_ready_addresses] == ["10.1.0.6"]
    assert [(p.name, p.port, p.protocol, p.app_protocol) for p in subset.ports] == [
        ("http", 80, "TCP", "http")
    ]


def test_endpoint_slice(loaded: LoadResult) -> None:
    eps = find(loaded.resources, "EndpointSlice", "shop", "web-abc12")
    assert isinstance(eps, EndpointSlice)
    assert eps.api_version == "discovery.k8s.io/v1"
    assert eps.labels["kubernetes.io/service-name"] == "web"
    assert eps.address_type == "IPv4"
    ready, not_ready = eps.endpoints
    assert ready.addresses == ["10.1.1.10"]
    assert ready.conditions is not None
    assert (ready.conditions.ready, ready.conditions.serving, ready.conditions.terminating) == (
        True,
        True,
        False,
    )
    assert (ready.node_name, ready.zone, ready.hostname) == ("node-a", "us-west1-a", "web-0")
    assert ready.target_ref is not None and ready.target_ref.name == "web-0"
    assert ready.hints == {"forZones": [{"name": "us-west1-a"}]}
    assert not_ready.conditions is not None and not_ready.conditions.ready is False
    assert [(p.name, p.port, p.protocol, p.app_protocol) for p in eps.ports] == [
        ("http", 8080, "TCP", "http"),
        ("grpc", 9091, "TCP", None),
    ]


def test_pod_with_status_and_arbitrary_spec(loaded: LoadResult) -> None:
    pod = find(loaded.resources, "Pod", "shop", "web-0")
    assert isinstance(pod, Pod)
    assert pod.labels == {"app": "web", "version": "v1"}
    assert pod.status.pod_ip == "10.1.1.10"
    assert [p.ip for p in pod.status.pod_ips] == ["10.1.1.10", "fd00::a"]
    assert pod.status.phase == "Running"
    # the rest of the status and all of the spec are kept as written
    extra = pod.status.model_extra or {}
    assert extra["hostIP"] == "192.168.1.10"
    assert extra["qosClass"] == "BestEffort"
    assert pod.spec["containers"][0]["ports"][0]["name"] == "http-web"
    assert pod.spec["tolerations"][0]["tolerationSeconds"] == 300


def test_pod_without_status() -> None:
    pod = load_ok(
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: c, image: busybox}]
        """
    ).resources.pods[0]
    assert pod.status.pod_ip is None
    assert pod.status.pod_ips == []


TLS_CRT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TLS_KEY = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def test_tls_secret_with_base64_data(loaded: LoadResult) -> None:
    secret = find(loaded.resources, "Secret", "istio-system", "web-cert")
    assert isinstance(secret, Secret)
    assert secret.type == "kubernetes.io/tls"
    assert secret.value("tls.crt") == TLS_CRT
    assert secret.value("tls.key") == TLS_KEY  # base64 split across lines
    assert secret.data == {"tls.crt": TLS_CRT, "tls.key": TLS_KEY}
    assert secret.value("ca.crt") is None
    assert secret.string_data == {}


def test_secret_string_data_wins_over_data(loaded: LoadResult) -> None:
    secret = find(loaded.resources, "Secret", "istio-system", "web-cert-plain")
    assert secret.type == "Opaque"
    assert secret.immutable is True
    assert secret.value("cert") == TLS_CRT
    assert secret.value("key") == b"plain-key"
    assert secret.value("other") == b"hello"
    assert secret.value("missing") is None


@pytest.mark.parametrize(
    ("body", "key", "value"),
    [
        ("stringData:\n  token: abc\n", "token", b"abc"),
        ("stringData:\n  port: 8080\n", "port", b"8080"),
        ("data:\n  token: YWJj\n", "token", b"abc"),
        ("data:\n  empty: ''\n", "empty", b""),
        ("data:\n", "anything", None),
        ("", "anything", None),
    ],
)
def test_secret_values(body: str, key: str, value: bytes | None) -> None:
    result = load_ok(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n{body}")
    secret = result.resources.secrets[0]
    assert secret.type == "Opaque"
    assert secret.value(key) == value
