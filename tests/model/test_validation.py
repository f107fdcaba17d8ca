"""Validation errors: exact ``file:line: Kind namespace/name: field.path: message`` strings."""

from __future__ import annotations

import pytest

from isthmus.model.base import parse_duration

from .helpers import error_strings, load_ok, load_yaml

SERVER_TLS_MODES = "PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL"
PROTOCOLS = "HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS, MYSQL"
DURATION = 'expected a duration such as "10s" or "250ms", got'
PORT = "expected a port number between 1 and 65535, got"


def test_weight_with_a_percent_sign() -> None:
    text = """
        apiVersion: networking.istio.io/v1alpha3
        kind: VirtualService
        metadata:
          name: tcp-echo
        spec:
          hosts:
          - "*"
          gateways:
          - tcp-echo-gateway
          tcp:
          - match:
            - port: 31400
            route:
            - destination:
                host: tcp-echo
                subset: v1
              weight: 80
            - destination: {host: tcp-echo, subset: v2}
              weight: "20%"
        """
    assert error_strings(text, "tcp.yaml") == [
        "tcp.yaml:19: VirtualService default/tcp-echo: spec.tcp[0].route[1].weight: "
        'expected an integer ≥ 0, got "20%"'
    ]


@pytest.mark.parametrize(
    ("weight", "shown"),
    [
        ("-1", "-1"),
        ("-20", "-20"),
        ('"-5"', '"-5"'),
        ("1.5", "1.5"),
        ("true", "true"),
        ("[80]", "a list"),
        ("{value: 80}", "a mapping"),
        ('"eighty"', '"eighty"'),
    ],
)
def test_bad_http_weight(weight: str, shown: str) -> None:
    text = f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: vs, namespace: web}}
        spec:
          http:
          - route:
            - destination: {{host: a}}
              weight: {weight}
        """
    assert error_strings(text, "w.yaml") == [
        f"w.yaml:8: VirtualService web/vs: spec.http[0].route[0].weight: "
        f"expected an integer ≥ 0, got {shown}"
    ]


@pytest.mark.parametrize(("weight", "value"), [("0", 0), ("100", 100), ('"30"', 30), ("7", 7)])
def test_good_weight(weight: str, value: int) -> None:
    result = load_ok(
        f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: vs}}
        spec:
          tls:
          - match: [{{sniHosts: [a.example.com]}}]
            route:
            - destination: {{host: a}}
              weight: {weight}
        """
    )
    assert result.resources.virtual_services[0].spec.tls[0].route[0].weight == value


# Unknown fields --------------------------------------------------------------------------------

UNKNOWN_FIELDS = [
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          host: [a]
        """,
        'u.yaml:5: VirtualService default/vs: spec.host: unknown field "host" '
        '(did you mean "hosts"?)',
        id="vs-spec",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          selectr: {istio: ingressgateway}
        """,
        'u.yaml:5: Gateway default/gw: spec.selectr: unknown field "selectr" '
        '(did you mean "selector"?)',
        id="gateway-spec",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - match:
            - uri: {prefix: /}
              header:
                x-user: {exact: a}
        """,
        "u.yaml:8: VirtualService default/vs: spec.http[0].match[0].header: "
        'unknown field "header" (did you mean "headers"?)',
        id="inside-match",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - match:
            - uri:
                prefx: /api
        """,
        "u.yaml:8: VirtualService default/vs: spec.http[0].match[0].uri.prefx: "
        'unknown field "prefx" (did you mean "prefix"?)',
        id="inside-string-match",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - match:
            - headers:
                x-user:
                  exatc: jason
        """,
        "u.yaml:9: VirtualService default/vs: spec.http[0].match[0].headers.x-user.exatc: "
        'unknown field "exatc" (did you mean "exact"?)',
        id="inside-header-map",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: dr, namespace: shop}
        spec:
          host: reviews
          trafficPolicy:
            connectionPool:
              tcp:
                maxConnection: 100
        """,
        "u.yaml:9: DestinationRule shop/dr: spec.trafficPolicy.connectionPool.tcp.maxConnection: "
        'unknown field "maxConnection" (did you mean "maxConnections"?)',
        id="inside-connection-pool-tcp",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: dr}
        spec:
          host: reviews
          subsets:
          - name: v1
            trafficPolicy:
              portLevelSettings:
              - port: {number: 80}
                outlierDetection:
                  consecutive5xxError: 3
        """,
        "u.yaml:12: DestinationRule default/dr: "
        "spec.subsets[0].trafficPolicy.portLevelSettings[0].outlierDetection.consecutive5xxError: "
        'unknown field "consecutive5xxError" (did you mean "consecutive5xxErrors"?)',
        id="deep-in-subset",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          servers:
          - port: {number: 443, protocol: HTTPS}
            hosts: ["*"]
            tls:
              mode: SIMPLE
              credentialname: cert
        """,
        "u.yaml:10: Gateway default/gw: spec.servers[0].tls.credentialname: "
        'unknown field "credentialname" (did you mean "credentialName"?)',
        id="server-tls",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - route:
            - destination: {host: a}
            retries:
              perTryTimout: 2s
        """,
        "u.yaml:9: VirtualService default/vs: spec.http[0].retries.perTryTimout: "
        'unknown field "perTryTimout" (did you mean "perTryTimeout"?)',
        id="retries",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - route:
            - destination: {host: a}
              wieght: 3
        """,
        "u.yaml:8: VirtualService default/vs: spec.http[0].route[0].wieght: "
        'unknown field "wieght" (did you mean "weight"?)',
        id="route-destination",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - route:
            - destination: {host: a}
            frobnicate: true
        """,
        'u.yaml:8: VirtualService default/vs: spec.http[0].frobnicate: unknown field "frobnicate"',
        id="no-suggestion",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: se}
        spec:
          hosts: [a.example.com]
          resolution: DNS
          endpoint:
          - address: 1.2.3.4
        """,
        'u.yaml:7: ServiceEntry default/se: spec.endpoint: unknown field "endpoint" '
        '(did you mean "endpoints"?)',
        id="serviceentry",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: we}
        spec:
          adress: 1.2.3.4
        """,
        'u.yaml:5: WorkloadEntry default/we: spec.adress: unknown field "adress" '
        '(did you mean "address"?)',
        id="workloadentry",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata:
          name: gw
          namspace: edge
        """,
        'u.yaml:5: Gateway default/gw: metadata.namspace: unknown field "namspace" '
        '(did you mean "namespace"?)',
        id="metadata",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        specs: {}
        """,
        'u.yaml:4: Gateway default/gw: specs: unknown field "specs" (did you mean "spec"?)',
        id="top-level",
    ),
    pytest.param(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: svc}
        spec:
          ports:
          - port: 80
            targetport: 8080
        """,
        'u.yaml:7: Service default/svc: spec.ports[0].targetport: unknown field "targetport" '
        '(did you mean "targetPort"?)',
        id="service-port",
    ),
    pytest.param(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: svc}
        spec:
          clusterIp: 10.0.0.1
        """,
        'u.yaml:5: Service default/svc: spec.clusterIp: unknown field "clusterIp" '
        '(did you mean "clusterIP"?)',
        id="service-cluster-ip",
    ),
]


@pytest.mark.parametrize(("text", "expected"), UNKNOWN_FIELDS)
def test_unknown_field_suggests_the_closest_name(text: str, expected: str) -> None:
    assert error_strings(text, "u.yaml") == [expected]


# Ports, durations, enums -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: gw}
            spec:
              servers:
              - port:
                  number: 70000
                  protocol: HTTP
                hosts: ["*"]
            """,
            f"p.yaml:7: Gateway default/gw: spec.servers[0].port.number: {PORT} 70000",
            id="gateway",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: gw}
            spec:
              servers:
              - port: {number: 0, protocol: HTTP}
                hosts: ["*"]
            """,
            f"p.yaml:6: Gateway default/gw: spec.servers[0].port.number: {PORT} 0",
            id="gateway-zero",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: gw}
            spec:
              servers:
              - port: {number: http, protocol: HTTP}
                hosts: ["*"]
            """,
            f'p.yaml:6: Gateway default/gw: spec.servers[0].port.number: {PORT} "http"',
            id="gateway-name",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - route:
                - destination:
                    host: a
                    port:
                      number: 70000
            """,
            "p.yaml:10: VirtualService default/vs: "
            f"spec.http[0].route[0].destination.port.number: {PORT} 70000",
            id="destination",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              tcp:
              - match:
                - port: 65536
            """,
            f"p.yaml:7: VirtualService default/vs: spec.tcp[0].match[0].port: {PORT} 65536",
            id="tcp-match",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: se}
            spec:
              hosts: [a.example.com]
              ports:
              - number: 70000
                name: http
            """,
            f"p.yaml:7: ServiceEntry default/se: spec.ports[0].number: {PORT} 70000",
            id="serviceentry",
        ),
        pytest.param(
            """
            apiVersion: v1
            kind: Service
            metadata: {name: svc}
            spec:
              type: NodePort
              ports:
              - port: 80
                nodePort: 70000
            """,
            f"p.yaml:8: Service default/svc: spec.ports[0].nodePort: {PORT} 70000",
            id="service-node-port",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: {name: we}
            spec:
              ports:
                http: 70000
            """,
            f"p.yaml:6: WorkloadEntry default/we: spec.ports.http: {PORT} 70000",
            id="workloadentry",
        ),
    ],
)
def test_port_out_of_range(text: str, expected: str) -> None:
    assert error_strings(text, "p.yaml") == [expected]


@pytest.mark.parametrize(("number", "value"), [("1", 1), ("65535", 65535), ('"8080"', 8080)])
def test_port_in_range(number: str, value: int) -> None:
    result = load_ok(
        f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: gw}}
        spec:
          servers:
          - port: {{number: {number}, protocol: TCP}}
            hosts: ["*"]
        """
    )
    assert result.resources.gateways[0].spec.servers[0].port.number == value


BAD_DURATIONS = [
    ('"10 seconds"', '"10 seconds"'),
    ('"10"', '"10"'),
    ("10", "10"),
    ("1.5", "1.5"),
    ('"s"', '"s"'),
    ('""', '""'),
    ('"-1s"', '"-1s"'),
    ('"1d"', '"1d"'),
    ('"1 h"', '"1 h"'),
    ('"1s "', None),  # surrounding spaces are trimmed: accepted
    ("true", "true"),
    ("[1s]", "a list"),
    ("{seconds: 1}", "a mapping"),
]


@pytest.mark.parametrize(("value", "shown"), BAD_DURATIONS)
def test_bad_duration(value: str, shown: str | None) -> None:
    text = f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: vs}}
        spec:
          http:
          - route:
            - destination: {{host: a}}
            timeout: {value}
        """
    expected = (
        []
        if shown is None
        else [f"d.yaml:8: VirtualService default/vs: spec.http[0].timeout: {DURATION} {shown}"]
    )
    assert error_strings(text, "d.yaml") == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("2h45m30.5s", 9930.5),
        ("10s", 10.0),
        ("0s", 0.0),
        (".5s", 0.5),
        ("100us", 0.0001),
        ("100µs", 0.0001),
        ("1500ns", 0.0000015),
        ("5m", 300.0),
        ("1ms", 0.001),
    ],
)
def test_good_duration_is_parsed_to_seconds(value: str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)
    result = load_ok(
        f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: vs}}
        spec:
          http:
          - route:
            - destination: {{host: a}}
            timeout: "{value}"
            retries:
              perTryTimeout: "{value}"
        """
    )
    http = result.resources.virtual_services[0].spec.http[0]
    assert http.timeout == pytest.approx(seconds)
    assert http.retries is not None
    assert http.retries.per_try_timeout == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("field", "yaml"),
    [
        (
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "connectionPool: {tcp: {connectTimeout: 10 seconds}}",
        ),
        (
            "spec.trafficPolicy.outlierDetection.interval",
            "outlierDetection: {interval: 10 seconds}",
        ),
        (
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
            "outlierDetection: {baseEjectionTime: 10 seconds}",
        ),
        (
            "spec.trafficPolicy.connectionPool.http.idleTimeout",
            "connectionPool: {http: {idleTimeout: 10 seconds}}",
        ),
    ],
)
def test_bad_duration_in_destination_rule(field: str, yaml: str) -> None:
    text = f"""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: dr}}
        spec:
          host: a
          trafficPolicy:
            {yaml}
        """
    assert error_strings(text, "dr.yaml") == [
        f'dr.yaml:7: DestinationRule default/dr: {field}: {DURATION} "10 seconds"'
    ]


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("http", "HTTP"),
        ("Http", "HTTP"),
        ("HTTP", "HTTP"),
        ("https", "HTTPS"),
        ("http2", "HTTP2"),
        ("grpc", "GRPC"),
        ("grpc-web", "GRPC-WEB"),
        ("tcp", "TCP"),
        ("tls", "TLS"),
        ("Mongo", "MONGO"),
        ("redis", "REDIS"),
        ("mysql", "MYSQL"),
    ],
)
def test_protocol_is_case_insensitive(written: str, stored: str) -> None:
    result = load_ok(
        f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: gw}}
        spec:
          servers:
          - port: {{number: 8000, protocol: {written}}}
            hosts: ["*"]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: se}}
        spec:
          hosts: [a.example.com]
          ports:
          - {{number: 8000, name: p, protocol: {written}}}
        """
    )
    assert result.resources.gateways[0].spec.servers[0].port.protocol == stored
    assert result.resources.service_entries[0].spec.ports[0].protocol == stored


@pytest.mark.parametrize("written", ["HTTP3", "UDP", "h2c", "", "1"])
def test_unknown_protocol_lists_the_choices(written: str) -> None:
    text = f"""
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {{name: gw}}
        spec:
          servers:
          - port: {{number: 80, protocol: "{written}"}}
            hosts: ["*"]
        """
    assert error_strings(text, "g.yaml") == [
        f"g.yaml:6: Gateway default/gw: spec.servers[0].port.protocol: "
        f'expected one of {PROTOCOLS}; got "{written}"'
    ]


ENUMS = [
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw, namespace: istio-system}
        spec:
          servers:
          - port: {number: 443, protocol: HTTPS}
            hosts: ["*"]
            tls:
              mode: SIMPEL
              credentialName: cert
        """,
        "e.yaml:9: Gateway istio-system/gw: spec.servers[0].tls.mode: "
        f'expected one of {SERVER_TLS_MODES}; got "SIMPEL"',
        id="gateway-tls-mode",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          servers:
          - port: {number: 443, protocol: HTTPS}
            hosts: ["*"]
            tls: {mode: simple}
        """,
        "e.yaml:8: Gateway default/gw: spec.servers[0].tls.mode: "
        f'expected one of {SERVER_TLS_MODES}; got "simple"',
        id="gateway-tls-mode-is-case-sensitive",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          servers:
          - port: {number: 443, protocol: HTTPS}
            hosts: ["*"]
            tls: {mode: SIMPLE, minProtocolVersion: TLSV1_4}
        """,
        "e.yaml:8: Gateway default/gw: spec.servers[0].tls.minProtocolVersion: "
        'expected one of TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3; got "TLSV1_4"',
        id="tls-version",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: dr}
        spec:
          host: a
          trafficPolicy:
            tls: {mode: SIMPEL}
        """,
        "e.yaml:7: DestinationRule default/dr: spec.trafficPolicy.tls.mode: "
        'expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL; got "SIMPEL"',
        id="client-tls-mode",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: dr}
        spec:
          host: a
          trafficPolicy:
            loadBalancer:
              simple: ROUND_ROBBIN
        """,
        "e.yaml:8: DestinationRule default/dr: spec.trafficPolicy.loadBalancer.simple: "
        "expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, "
        'LEAST_REQUEST; got "ROUND_ROBBIN"',
        id="load-balancer",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: se}
        spec:
          hosts: [a.example.com]
          resolution: dns
        """,
        "e.yaml:6: ServiceEntry default/se: spec.resolution: "
        'expected one of NONE, STATIC, DNS, DNS_ROUND_ROBIN; got "dns"',
        id="resolution",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: se}
        spec:
          hosts: [a.example.com]
          location: EXTERNAL
        """,
        "e.yaml:6: ServiceEntry default/se: spec.location: "
        'expected one of MESH_EXTERNAL, MESH_INTERNAL; got "EXTERNAL"',
        id="location",
    ),
    pytest.param(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: svc}
        spec:
          type: Headless
        """,
        "e.yaml:5: Service default/svc: spec.type: "
        'expected one of ClusterIP, NodePort, LoadBalancer, ExternalName; got "Headless"',
        id="service-type",
    ),
    pytest.param(
        """
        apiVersion: v1
        kind: Service
        metadata: {name: svc}
        spec:
          ports:
          - {port: 80, protocol: tcp}
        """,
        "e.yaml:6: Service default/svc: spec.ports[0].protocol: "
        'expected one of TCP, UDP, SCTP; got "tcp"',
        id="service-port-protocol",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - redirect: {uri: /x, derivePort: FROM_PORT}
        """,
        "e.yaml:6: VirtualService default/vs: spec.http[0].redirect.derivePort: "
        'expected one of FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT; got "FROM_PORT"',
        id="derive-port",
    ),
    pytest.param(
        """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: dr}
        spec:
          host: a
          trafficPolicy:
            connectionPool:
              http: {h2UpgradePolicy: 5}
        """,
        "e.yaml:8: DestinationRule default/dr: "
        "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: "
        "expected one of DEFAULT, DO_NOT_UPGRADE, UPGRADE; got 5",
        id="h2-upgrade-not-a-string",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ENUMS)
def test_invalid_enum_lists_the_choices(text: str, expected: str) -> None:
    assert error_strings(text, "e.yaml") == [expected]


# StringMatch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "match", "path", "line"),
    [
        ("uri", "{exact: /a, prefix: /b}", "uri", 7),
        ("uri", "{exact: /a, prefix: /b, regex: c}", "uri", 7),
        ("scheme", "{prefix: h, regex: x}", "scheme", 7),
        ("authority", "{exact: a, regex: b}", "authority", 7),
        ("headers", "{x-user: {exact: a, prefix: b}}", "headers.x-user", 7),
        ("queryParams", "{debug: {exact: '1', regex: '.*'}}", "queryParams.debug", 7),
        ("withoutHeaders", "{x-skip: {prefix: a, exact: b}}", "withoutHeaders.x-skip", 7),
    ],
)
def test_string_match_allows_only_one_kind(where: str, match: str, path: str, line: int) -> None:
    text = f"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {{name: vs}}
        spec:
          http:
          - match:
            - {where}: {match}
            route: [{{destination: {{host: a}}}}]
        """
    assert error_strings(text, "m.yaml") == [
        f"m.yaml:{line}: VirtualService default/vs: spec.http[0].match[0].{path}: "
        "only one of exact, prefix or regex may be set"
    ]


def test_string_match_in_cors_allow_origins() -> None:
    text = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - corsPolicy:
              allowOrigins:
              - exact: https://a.example.com
              - {exact: https://b.example.com, prefix: https://}
            route: [{destination: {host: a}}]
        """
    assert error_strings(text, "m.yaml") == [
        "m.yaml:9: VirtualService default/vs: spec.http[0].corsPolicy.allowOrigins[1]: "
        "only one of exact, prefix or regex may be set"
    ]


def test_empty_string_match_is_allowed() -> None:
    result = load_ok(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: vs}
        spec:
          http:
          - match:
            - headers:
                x-present: {}
            route: [{destination: {host: a}}]
        """
    )
    present = result.resources.virtual_services[0].spec.http[0].match[0].headers["x-present"]
    assert (present.exact, present.prefix, present.regex) == (None, None, None)


# Secrets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('"!!!notbase64"', 'key "tls.crt": invalid base64'),
        ('"aGVsbG8"', 'key "tls.crt": invalid base64'),  # missing padding
        ("12345", 'key "tls.crt": expected base64 text'),
        ("[a]", 'key "tls.crt": expected base64 text'),
    ],
)
def test_secret_data_must_be_base64(data: str, message: str) -> None:
    result = load_yaml(
        f"""
        apiVersion: v1
        kind: Secret
        metadata:
          name: cert
          namespace: istio-system
        type: kubernetes.io/tls
        data:
          tls.key: aGVsbG8=
          tls.crt: {data}
        """,
        "s.yaml",
    )
    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.file, error.line, error.ref, error.path) == (
        "s.yaml",
        7,
        "Secret istio-system/cert",
        "data",
    )
    assert error.message.startswith(message)
    assert str(error).startswith(f"s.yaml:7: Secret istio-system/cert: data: {message}")
    assert result.resources.secrets == []


def test_secret_data_must_be_a_mapping() -> None:
    text = """
        apiVersion: v1
        kind: Secret
        metadata: {name: s}
        data: [aGVsbG8=]
        """
    assert error_strings(text, "s.yaml") == [
        "s.yaml:4: Secret default/s: data: expected a mapping of key to base64 data"
    ]


# Types and required fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              hosts: "*"
            """,
            't.yaml:5: VirtualService default/vs: spec.hosts: expected a list, got "*"',
            id="list",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec: []
            """,
            "t.yaml:4: VirtualService default/vs: spec: expected a mapping, got a list",
            id="mapping",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - match:
                - ignoreUriCase: maybe
            """,
            "t.yaml:7: VirtualService default/vs: spec.http[0].match[0].ignoreUriCase: "
            'expected true or false, got "maybe"',
            id="bool",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - route:
                - destination:
                    host: {name: a}
            """,
            "t.yaml:8: VirtualService default/vs: spec.http[0].route[0].destination.host: "
            "expected a string, got a mapping",
            id="string",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - route:
                - destination: {}
            """,
            "t.yaml:7: VirtualService default/vs: spec.http[0].route[0].destination.host: "
            "missing required field",
            id="missing-host",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - redirect:
                  uri: /new
                  redirectCode: 200
            """,
            "t.yaml:8: VirtualService default/vs: spec.http[0].redirect.redirectCode: "
            "expected a value ≥ 300, got 200",
            id="redirect-code",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - directResponse:
                  status: 600
            """,
            "t.yaml:7: VirtualService default/vs: spec.http[0].directResponse.status: "
            "expected a value ≤ 599, got 600",
            id="direct-response-status",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - route: [{destination: {host: a}}]
                fault:
                  abort:
                    httpStatus: 503
                    percentage: {value: 150}
            """,
            "t.yaml:10: VirtualService default/vs: spec.http[0].fault.abort.percentage.value: "
            "expected a percentage between 0 and 100, got 150",
            id="percentage",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              http:
              - route: [{destination: {host: a}}]
                mirror: {host: b}
                mirrorPercentage: 50
            """,
            "t.yaml:8: VirtualService default/vs: spec.http[0].mirrorPercentage: "
            "expected a mapping, got 50",
            id="mirror-percentage-not-a-mapping",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: vs}
            spec:
              tls:
              - route: [{destination: {host: a}}]
            """,
            "t.yaml:6: VirtualService default/vs: spec.tls[0].match: missing required field",
            id="tls-match-required",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: dr}
            spec:
              subsets: [{name: v1}]
            """,
            "t.yaml:4: DestinationRule default/dr: spec.host: missing required field",
            id="dr-host-required",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: dr}
            """,
            "t.yaml:1: DestinationRule default/dr: spec: missing required field",
            id="dr-spec-required",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: dr}
            spec:
              host: a
              subsets:
              - labels: {version: v1}
            """,
            "t.yaml:7: DestinationRule default/dr: spec.subsets[0].name: missing required field",
            id="subset-name-required",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: dr}
            spec:
              host: a
              trafficPolicy:
                connectionPool:
                  tcp: {maxConnections: 0}
            """,
            "t.yaml:8: DestinationRule default/dr: "
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: "
            "expected an integer ≥ 1, got 0",
            id="positive-int",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: se}
            spec:
              resolution: DNS
            """,
            "t.yaml:4: ServiceEntry default/se: spec.hosts: missing required field",
            id="se-hosts-required",
        ),
        pytest.param(
            """
            apiVersion: networking.istio.io/v1
            kind: Gateway
            metadata: {name: gw}
            spec:
              servers:
              - port: {number: 80, protocol: HTTP}
            """,
            "t.yaml:6: Gateway default/gw: spec.servers[0].hosts: missing required field",
            id="server-hosts-required",
        ),
        pytest.param(
            """
            apiVersion: v1
            kind: Service
            metadata:
              name: svc
              labels:
                enabled: true
            """,
            "t.yaml:6: Service default/svc: metadata.labels.enabled: expected a string, got true",
            id="label-bool",
        ),
        pytest.param(
            """
            apiVersion: v1
            kind: Pod
            metadata: {name: p}
            spec: {anything: goes}
            extra: 1
            """,
            't.yaml:5: Pod default/p: extra: unknown field "extra"',
            id="pod-top-level",
        ),
    ],
)
def test_type_errors(text: str, expected: str) -> None:
    assert error_strings(text, "t.yaml") == [expected]


# Several errors --------------------------------------------------------------------------------


def test_every_error_in_one_resource_is_reported() -> None:
    text = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: reviews
          namespace: shop
        spec:
          host: [reviews]
          http:
          - match:
            - uri:
                prefx: /api
            route:
            - destination: {host: reviews, subset: v1}
              weight: "20%"
            - destination: {host: reviews, subset: v2}
              weight: -5
            timeout: 10 seconds
          tcp:
          - match:
            - port: 70000
        """
    errors = error_strings(text, "many.yaml")
    ref = "many.yaml:{}: VirtualService shop/reviews: "
    assert sorted(errors) == sorted(
        [
            ref.format(7) + 'spec.host: unknown field "host" (did you mean "hosts"?)',
            ref.format(11)
            + 'spec.http[0].match[0].uri.prefx: unknown field "prefx" (did you mean "prefix"?)',
            ref.format(14) + 'spec.http[0].route[0].weight: expected an integer ≥ 0, got "20%"',
            ref.format(16) + "spec.http[0].route[1].weight: expected an integer ≥ 0, got -5",
            ref.format(17) + f'spec.http[0].timeout: {DURATION} "10 seconds"',
            ref.format(20) + f"spec.tcp[0].match[0].port: {PORT} 70000",
        ]
    )


def test_errors_in_one_resource_do_not_stop_the_others() -> None:
    text = """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: good-1}
        spec:
          servers: [{port: {number: 80, protocol: HTTP}, hosts: ["*"]}]
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: bad}
        spec:
          servers:
          - port: {number: 80, protocol: HTTP}
            hosts: ["*"]
            tls: {mode: SIMPEL}
          - port: {number: 70000, protocol: HTTP}
            hosts: ["*"]
        ---
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: good-2}
        spec:
          servers: [{port: {number: 81, protocol: HTTP}, hosts: ["*"]}]
        """
    result = load_yaml(text, "gw.yaml")
    assert sorted(str(e) for e in result.errors) == sorted(
        [
            "gw.yaml:14: Gateway default/bad: spec.servers[0].tls.mode: "
            f'expected one of {SERVER_TLS_MODES}; got "SIMPEL"',
            f"gw.yaml:15: Gateway default/bad: spec.servers[1].port.number: {PORT} 70000",
        ]
    )
    assert [g.name for g in result.resources.gateways] == ["good-1", "good-2"]
    assert {e.ref for e in result.errors} == {"Gateway default/bad"}


def test_each_error_carries_its_parts() -> None:
    result = load_yaml(
        """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: tcp-echo}
        spec:
          tcp:
          - route:
            - destination: {host: a}
              weight: "20%"
        """,
        "tcp.yaml",
    )
    (error,) = result.errors
    assert error.file == "tcp.yaml"
    assert error.line == 8
    assert error.ref == "VirtualService default/tcp-echo"
    assert error.path == "spec.tcp[0].route[0].weight"
    assert error.message == 'expected an integer ≥ 0, got "20%"'
