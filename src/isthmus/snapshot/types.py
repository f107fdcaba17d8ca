"""The routing snapshot: listeners → filter chains → routes → clusters → endpoints.

Everything here is immutable and carries its derived Envoy/Istio name and the resource it came
from, so the admin API and ``explain`` can say why traffic went where it did.  The data plane
only ever reads a snapshot; a new config means a new snapshot swapped in by one assignment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from isthmus.refs import ResourceRef
from isthmus.snapshot.match import (
    URI_EXACT,
    URI_OTHER,
    URI_PREFIX,
    URI_REGEX,
    L4Match,
    Request,
    RouteMatch,
    host_matches,
)

# --- endpoints and clusters ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream address.  ``resolve`` means ``address`` is a DNS name looked up at connect."""

    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    origin: ResourceRef | None = None
    resolve: bool = False
    weight: int = 1

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    """``simple`` is ROUND_ROBIN, LEAST_REQUEST (Istio's default), RANDOM or PASSTHROUGH."""

    simple: str = "LEAST_REQUEST"
    hash_source_ip: bool = False
    hash_header: str | None = None
    hash_cookie: str | None = None
    hash_query_parameter: str | None = None


@dataclass(frozen=True, slots=True)
class TcpKeepalive:
    time: float | None = None
    interval: float | None = None
    probes: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """``connectionPool`` with Envoy's/Istio's defaults filled in (``None`` means unlimited)."""

    max_connections: int | None = None
    connect_timeout: float = 10.0
    idle_timeout: float = 3600.0
    max_connection_duration: float | None = None
    tcp_keepalive: TcpKeepalive | None = None
    http1_max_pending_requests: int | None = None
    max_requests_per_connection: int | None = None
    http_idle_timeout: float = 3600.0
    max_retries: int | None = None


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx: int = 5
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int = 0


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """DestinationRule ``tls`` towards the upstream (origination)."""

    mode: str
    sni: str | None = None
    ca_certificates: str | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    credential_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    insecure_skip_verify: bool = False
    secret: tuple[tuple[str, bytes], ...] = ()
    """``credentialName``'s content (cert, key, ca), read from the gateway's namespace."""


ClusterType = Literal["EDS", "STRICT_DNS", "LOGICAL_DNS", "STATIC", "ORIGINAL_DST"]


@dataclass(frozen=True, slots=True)
class Cluster:
    """``outbound|PORT|SUBSET|HOST``: the endpoints of one service port (and subset)."""

    name: str
    service: str
    port: int
    subset: str
    type: ClusterType
    endpoints: tuple[Endpoint, ...]
    load_balancer: LoadBalancer = LoadBalancer()
    connection_pool: ConnectionPool = ConnectionPool()
    outlier_detection: OutlierDetection | None = None
    tls: UpstreamTls | None = None
    service_origin: ResourceRef | None = None
    policy_origin: ResourceRef | None = None


def cluster_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def cluster_for_sni(sni: str) -> str | None:
    """Istio's AUTO_PASSTHROUGH SNI ``outbound_.9080_.v1_.reviews.ns.svc.cluster.local`` as
    the cluster name ``outbound|9080|v1|reviews.ns.svc.cluster.local``."""
    parts = sni.split("_.", 3)
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    subset = "" if parts[2] == "_" else parts[2]
    host = parts[3]
    if parts[2] == "" and host.startswith("."):
        host = host[1:]
    return cluster_name(int(parts[1]), subset, host)


# --- routes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    # derived once (private: not part of what config_dump shows)
    _drop: frozenset[str] = field(default=frozenset(), compare=False, repr=False, init=False)
    _append: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False, init=False)
    _empty: bool = field(default=True, compare=False, repr=False, init=False)
    _fields: bytes = field(default=b"", compare=False, repr=False, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_drop", frozenset(self.remove) | {n for n, _ in self.set})
        object.__setattr__(self, "_append", self.set + self.add)
        object.__setattr__(self, "_empty", not (self.set or self.add or self.remove))
        # UTF-8: what Envoy sends for a configured value (latin-1 cannot encode them all)
        text = "".join(f"\r\n{n}: {v}" for n, v in self._append)
        object.__setattr__(self, "_fields", text.encode())

    @property
    def drop(self) -> frozenset[str]:
        """Names a message loses before ``set`` and ``add`` are appended: ``remove`` and
        ``set``'s."""
        return self._drop

    @property
    def append(self) -> tuple[tuple[str, str], ...]:
        """``set`` then ``add``: what is appended."""
        return self._append

    @property
    def empty(self) -> bool:
        return self._empty

    @property
    def fields(self) -> bytes:
        """:attr:`append` as header lines, each preceded by CRLF, encoded once."""
        return self._fields

    def __bool__(self) -> bool:
        return not self._empty

    def apply(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Istio ``headers``: remove, then set (replace), then add (append), Envoy's order;
        returns ``headers`` itself when nothing is dropped."""
        if self._empty:
            return headers
        drop = self._drop
        if drop:
            headers = [h for h in headers if h[0] not in drop]
        headers.extend(self._append)
        return headers


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    """A destination and its share; ``weight`` is the raw weight, ``share`` weight/sum."""

    cluster: str
    weight: int
    share: float
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 2
    per_try_timeout: float | None = None
    retry_on: tuple[str, ...] = (
        "connect-failure",
        "refused-stream",
        "unavailable",
        "cancelled",
        "retriable-status-codes",
    )
    retriable_status_codes: tuple[int, ...] = ()
    _retry_statuses: frozenset[int] = field(
        default=frozenset(), compare=False, repr=False, init=False
    )

    def __post_init__(self) -> None:
        on = self.retry_on
        statuses: set[int] = set()
        if "5xx" in on:
            statuses.update(range(500, 600))
        if "gateway-error" in on:
            statuses.update((502, 503, 504))
        if "retriable-status-codes" in on:
            statuses.update(self.retriable_status_codes)
        object.__setattr__(self, "_retry_statuses", frozenset(statuses))

    @property
    def retry_statuses(self) -> frozenset[int]:
        """Response statuses that start another attempt (``5xx``, ``gateway-error``,
        ``retriable-status-codes``)."""
        return self._retry_statuses


@dataclass(frozen=True, slots=True)
class Fault:
    delay: float | None = None
    delay_percent: float = 100.0
    abort_status: int | None = None
    abort_percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Mirror:
    cluster: str
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Cors:
    allow_origins: tuple[object, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: float | None = None
    allow_credentials: bool | None = None


@dataclass(frozen=True, slots=True)
class Rewrite:
    uri: str | None = None
    authority: str | None = None
    regex: object | None = None
    regex_substitution: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardAction:
    clusters: tuple[WeightedCluster, ...]
    timeout: float | None = None
    retries: RetryPolicy = RetryPolicy()
    rewrite: Rewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    fault: Fault | None = None
    cors: Cors | None = None
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()


@dataclass(frozen=True, slots=True)
class RedirectAction:
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: str | None = None
    scheme: str | None = None
    code: int = 301


@dataclass(frozen=True, slots=True)
class DirectResponseAction:
    status: int
    body: bytes = b""


RouteAction = ForwardAction | RedirectAction | DirectResponseAction


@dataclass(frozen=True, slots=True)
class Route:
    """One Envoy route: one ``match`` entry of an Istio HTTP rule (entries are ORed)."""

    name: str
    match: RouteMatch
    action: RouteAction
    origin: ResourceRef
    field_path: str


RouteRow = tuple[int, Any, str, bool, Route]


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    require_tls: bool = False
    origins: tuple[ResourceRef, ...] = ()
    _table: tuple[RouteRow, ...] = field(default=(), compare=False, repr=False, init=False)

    def __post_init__(self) -> None:
        table = tuple((*r.match.uri_check, r.match.only_uri, r) for r in self.routes)
        object.__setattr__(self, "_table", table)

    def select(self, req: Request) -> Route | None:
        """The first route whose match holds (Envoy's order).  Each route's URI condition
        is checked inline; only a route whose URI matched looks further (headers, query...),
        and only then are the request's header and query maps built."""
        path = req.path
        if "?" in path:
            path = path.split("?", 1)[0]
        prefix_kind, exact_kind, regex_kind, other_kind = (
            URI_PREFIX,
            URI_EXACT,
            URI_REGEX,
            URI_OTHER,
        )
        startswith = path.startswith
        for kind, value, prefix, only_uri, route in self._table:
            if kind == prefix_kind:
                if not startswith(value):
                    continue
            elif kind == exact_kind:
                if path != value:
                    continue
            elif kind == regex_kind:
                if not startswith(prefix) or value.fullmatch(path) is None:
                    continue
            elif kind == other_kind and not value.matches(path):
                continue
            if only_uri or route.match.matches_besides_uri(req):
                return route
        return None


@dataclass(frozen=True, slots=True)
class RouteConfiguration:
    """``http.PORT`` or ``https.PORT.NAME.GATEWAY.NS``.

    Hosts are chosen exact > longest ``*.suffix`` > ``*``, case-insensitively.
    """

    name: str
    virtual_hosts: tuple[VirtualHost, ...]
    _exact: dict[str, VirtualHost] = field(default_factory=dict, compare=False, repr=False)
    _wildcards: tuple[tuple[str, VirtualHost], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        exact: dict[str, VirtualHost] = {}
        wildcards: list[tuple[str, VirtualHost]] = []
        for vhost in self.virtual_hosts:
            for domain in vhost.domains:
                d = domain.lower()
                if d.startswith("*"):
                    wildcards.append((d, vhost))
                else:
                    exact.setdefault(d, vhost)
        wildcards.sort(key=lambda item: -len(item[0]))
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_wildcards", tuple(wildcards))

    def find_virtual_host(self, authority: str) -> VirtualHost | None:
        host = authority.lower()
        found = self._exact.get(host)
        if found is not None:
            return found
        if ":" in host and not host.endswith("]"):
            host = host.rsplit(":", 1)[0]
            found = self._exact.get(host)
            if found is not None:
                return found
        for pattern, vhost in self._wildcards:
            if host_matches(pattern, host):
                return vhost
        return None


# --- listeners -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DownstreamTls:
    """Gateway ``tls`` for a terminating server: where its certificates come from."""

    mode: str
    credential_names: tuple[str, ...] = ()
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    min_protocol_version: str = "TLSV1_2"
    max_protocol_version: str = "TLS_AUTO"
    cipher_suites: tuple[str, ...] = ()
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpConnectionManager:
    route_config: RouteConfiguration


@dataclass(frozen=True, slots=True)
class TcpRoute:
    match: L4Match
    clusters: tuple[WeightedCluster, ...]
    origin: ResourceRef
    field_path: str


@dataclass(frozen=True, slots=True)
class TcpProxy:
    """Routes tried in order; the first match picks a weighted cluster."""

    routes: tuple[TcpRoute, ...]


Application = HttpConnectionManager | TcpProxy


@dataclass(frozen=True, slots=True)
class FilterChain:
    """``server_names`` empty matches any SNI (or none); ``tls`` set means terminate here."""

    name: str
    application: Application
    server_names: tuple[str, ...] = ()
    transport: Literal["raw_buffer", "tls"] = "raw_buffer"
    tls: DownstreamTls | None = None
    https_redirect: bool = False
    origins: tuple[ResourceRef, ...] = ()
    auto_passthrough: bool = False
    """AUTO_PASSTHROUGH: the SNI ``outbound_.PORT_.SUBSET_.HOST`` names the cluster."""


@dataclass(frozen=True, slots=True)
class Listener:
    """``ADDRESS_PORT``; ``port`` is the bound port, ``gateway_port`` the Gateway server port."""

    name: str
    address: str
    port: int
    gateway_port: int
    protocol: str
    filter_chains: tuple[FilterChain, ...]
    origins: tuple[ResourceRef, ...] = ()

    @property
    def inspects_sni(self) -> bool:
        return any(fc.transport == "tls" or fc.server_names for fc in self.filter_chains)


@dataclass(frozen=True, slots=True)
class MeshOutbound:
    """What a sidecar would route, for the local explicit proxy (``run --mesh-port``).

    ``route_config`` has a virtual host per service (``host``, ``host:port`` and the short
    names), its default route to the service's cluster replaced by VirtualServices bound to
    ``mesh``; ``tcp`` maps ``host:port`` to the destinations of a CONNECT tunnel.
    """

    route_config: RouteConfiguration
    tcp: Mapping[str, tuple[WeightedCluster, ...]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str
    listeners: tuple[Listener, ...]
    clusters: Mapping[str, Cluster]
    gateways: tuple[ResourceRef, ...] = ()
    mesh: MeshOutbound | None = None

    def listener(self, name: str) -> Listener | None:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None

    def listener_for_port(self, port: int) -> Listener | None:
        """The listener bound at ``port``, else the one serving Gateway port ``port``."""
        for listener in self.listeners:
            if listener.port == port:
                return listener
        for listener in self.listeners:
            if listener.gateway_port == port:
                return listener
        return None
