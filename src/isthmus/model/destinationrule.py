"""networking.istio.io DestinationRule: subsets and the traffic policy towards a service."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from isthmus.model.base import Duration, Model, NonNegInt, PositiveInt, Str, enum_of
from isthmus.model.virtualservice import PortSelector

SimpleLB = Annotated[
    Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"],
    enum_of("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"),
]
ClientTLSMode = Annotated[
    Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"],
    enum_of("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"),
]


class HTTPCookie(Model):
    name: Str
    path: Str | None = None
    ttl: Duration | None = None


class RingHash(Model):
    minimum_ring_size: NonNegInt | None = None


class MagLev(Model):
    table_size: NonNegInt | None = None


class ConsistentHashLB(Model):
    http_header_name: Str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: Str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: NonNegInt | None = None


class LocalityLoadBalancerSetting(Model):
    distribute: list[dict[str, Any]] = Field(default_factory=list)
    failover: list[dict[str, Any]] = Field(default_factory=list)
    failover_priority: list[Str] = Field(default_factory=list)
    enabled: bool | None = None


class WarmupConfiguration(Model):
    duration: Duration
    minimum_percent: float | None = None
    aggression: float | None = None


class LoadBalancerSettings(Model):
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None
    warmup: WarmupConfiguration | None = None


class TcpKeepalive(Model):
    probes: NonNegInt | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(Model):
    max_connections: PositiveInt | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(Model):
    http1_max_pending_requests: PositiveInt | None = None
    http2_max_requests: PositiveInt | None = None
    max_requests_per_connection: NonNegInt | None = None
    max_retries: NonNegInt | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: Annotated[
        Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None,
        enum_of("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"),
    ] = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: NonNegInt | None = None


class ConnectionPoolSettings(Model):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Model):
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: NonNegInt | None = None
    consecutive_gateway_errors: NonNegInt | None = None
    consecutive_5xx_errors: NonNegInt | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_errors: NonNegInt | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    min_health_percent: Annotated[int, Field(ge=0, le=100)] | None = None


class ClientTLSSettings(Model):
    mode: ClientTLSMode = "DISABLE"
    client_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None
    ca_crl: Str | None = None
    credential_name: Str | None = None
    subject_alt_names: list[Str] = Field(default_factory=list)
    sni: Str | None = None
    insecure_skip_verify: bool | None = None


class PortTrafficPolicy(Model):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(Model):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: dict[str, Any] | None = None
    proxy_protocol: dict[str, Any] | None = None


class Subset(Model):
    name: Str
    labels: dict[str, Str] = Field(default_factory=dict)
    traffic_policy: TrafficPolicy | None = None


class WorkloadSelector(Model):
    match_labels: dict[str, Str] = Field(default_factory=dict)


class DestinationRuleSpec(Model):
    host: Str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    export_to: list[Str] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None
