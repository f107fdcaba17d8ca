"""Clusters (``outbound|PORT|SUBSET|HOST``) with DestinationRule policies, built on demand."""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.model.destinationrule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    LoadBalancerSettings,
    TrafficPolicy,
)
from isthmus.model.destinationrule import (
    OutlierDetection as OutlierSpec,
)
from isthmus.model.virtualservice import Destination
from isthmus.refs import ResourceRef
from isthmus.snapshot.types import (
    Cluster,
    ConnectionPool,
    LoadBalancer,
    OutlierDetection,
    TcpKeepalive,
    UpstreamTls,
    cluster_name,
)
from isthmus.translate import diagnostics as d
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.hosts import fqdn
from isthmus.translate.identity import selects
from isthmus.translate.registry import Registry, ServiceInfo, ServicePortInfo


@dataclass
class ClusterBuilder:
    registry: Registry
    client_namespace: str
    clusters: dict[str, Cluster] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def destination(
        self, dest: Destination, namespace: str, ref: ResourceRef, path: str
    ) -> str | None:
        """The cluster name for a route destination, building the cluster; None if it cannot
        exist (the reason is recorded as a diagnostic and the route answers 500/closes)."""
        host = fqdn(dest.host, namespace)
        info = self.registry.lookup(host)
        if info is None:
            self._add(
                d.error(
                    d.REFERENCED_RESOURCE_NOT_FOUND,
                    ref,
                    f"{path}.host",
                    f'Referenced host not found: "{host}"',
                )
            )
            return None
        port = self._port(info, dest, ref, path)
        if port is None:
            return None
        subset = dest.subset or ""
        name = cluster_name(port.port, subset, host)
        if name in self.clusters:
            return name
        cluster = self._build(name, host, info, port, subset, ref, path)
        if cluster is None:
            return None
        self.clusters[name] = cluster
        return name

    def all_services(self) -> None:
        """Every service port and DestinationRule subset as a cluster (AUTO_PASSTHROUGH may
        name any of them in its SNI)."""
        for host, info in self.registry.services.items():
            if host.startswith("*"):
                continue
            rule = self.registry.destination_rule(host, self.client_namespace)
            subsets = [s.name for s in rule.spec.subsets] if rule else []
            for port in info.ports:
                for subset in ["", *subsets]:
                    name = cluster_name(port.port, subset, host)
                    if name not in self.clusters:
                        built = self._build(name, host, info, port, subset, info.origin, "")
                        if built is not None:
                            self.clusters[name] = built

    def _tls(self, tls: ClientTLSSettings | None) -> UpstreamTls | None:
        if tls is None or tls.mode == "DISABLE":
            return None
        return _upstream_tls(tls, _tls_secret(self, tls))

    def _add(self, diag: Diagnostic) -> None:
        if diag not in self.diagnostics:
            self.diagnostics.append(diag)

    def _port(
        self, info: ServiceInfo, dest: Destination, ref: ResourceRef, path: str
    ) -> ServicePortInfo | None:
        if dest.port is None:
            if len(info.ports) == 1:
                return info.ports[0]
            self._add(
                d.error(
                    d.REFERENCED_RESOURCE_NOT_FOUND,
                    ref,
                    f"{path}.port",
                    f'destination "{info.host}" has {len(info.ports)} ports; '
                    "the destination must name one with port.number",
                )
            )
            return None
        port = info.port(dest.port.number)
        if port is None:
            known = ", ".join(str(p.port) for p in info.ports) or "none"
            hint = ""
            for p in info.ports:
                if p.target_port == dest.port.number:
                    hint = f" ({dest.port.number} is the targetPort of port {p.port}: use {p.port})"
            self._add(
                d.error(
                    d.REFERENCED_RESOURCE_NOT_FOUND,
                    ref,
                    f"{path}.port.number",
                    f"Referenced port {dest.port.number} is not a port of {info.origin} "
                    f"(its ports: {known}){hint}",
                )
            )
        return port

    def _build(
        self,
        name: str,
        host: str,
        info: ServiceInfo,
        port: ServicePortInfo,
        subset: str,
        ref: ResourceRef,
        path: str,
    ) -> Cluster | None:
        rule = self.registry.destination_rule(host, self.client_namespace)
        endpoints = self.registry.endpoints(info, port)
        policy = rule.spec.traffic_policy if rule else None
        policies = [policy]
        if subset:
            found = next((s for s in rule.spec.subsets if s.name == subset), None) if rule else None
            if found is None or rule is None:
                where = f" in {rule.ref}" if rule else " (no DestinationRule for this host)"
                self._add(
                    d.error(
                        d.REFERENCED_RESOURCE_NOT_FOUND,
                        ref,
                        f"{path}.subset",
                        f"Referenced host+subset in destinationrule not found: "
                        f'"{host}+{subset}"{where}',
                    )
                )
                return None
            endpoints = tuple(e for e in endpoints if selects(found.labels, e.labels))
            policies.append(found.traffic_policy)
        merged = _merge(policies, port.port)
        return Cluster(
            name=name,
            service=host,
            port=port.port,
            subset=subset,
            type=info.cluster_type,
            endpoints=endpoints,
            load_balancer=_load_balancer(merged.load_balancer),
            connection_pool=_connection_pool(merged.connection_pool),
            outlier_detection=_outlier(merged.outlier_detection),
            tls=self._tls(merged.tls),
            service_origin=info.origin,
            policy_origin=rule.ref if rule else None,
        )


def _tls_secret(builder: ClusterBuilder, tls: ClientTLSSettings) -> tuple[tuple[str, bytes], ...]:
    """``credentialName`` of an originating DestinationRule, read from the gateway workload's
    namespace like the Gateway's own credentials."""
    from isthmus.translate.credentials import credential_material, find_secret, secret_name

    if not tls.credential_name:
        return ()
    found = find_secret(
        builder.registry.resources, builder.client_namespace, secret_name(tls.credential_name)
    )
    material = credential_material(found) if found is not None else None
    return tuple(sorted((material or {}).items()))


@dataclass
class _Policy:
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierSpec | None = None
    tls: ClientTLSSettings | None = None


def _merge(policies: list[TrafficPolicy | None], port: int) -> _Policy:
    """Top level, then its port-level entry, then the subset's (and its port level)."""
    out = _Policy()
    for policy in policies:
        if policy is None:
            continue
        layers: list[object] = [policy]
        layers.extend(p for p in policy.port_level_settings if p.port and p.port.number == port)
        for layer in layers:
            for attr in ("load_balancer", "connection_pool", "outlier_detection", "tls"):
                value = getattr(layer, attr)
                if value is not None:
                    setattr(out, attr, value)
    return out


def _load_balancer(lb: LoadBalancerSettings | None) -> LoadBalancer:
    if lb is None:
        return LoadBalancer()
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        return LoadBalancer(
            simple="MAGLEV" if ch.maglev is not None else "RING_HASH",
            hash_source_ip=bool(ch.use_source_ip),
            hash_header=ch.http_header_name,
            hash_cookie=ch.http_cookie.name if ch.http_cookie else None,
            hash_query_parameter=ch.http_query_parameter_name,
        )
    simple = lb.simple or "LEAST_REQUEST"
    if simple in ("UNSPECIFIED", "LEAST_CONN"):
        simple = "LEAST_REQUEST"
    return LoadBalancer(simple=simple)


def _connection_pool(cp: ConnectionPoolSettings | None) -> ConnectionPool:
    if cp is None:
        return ConnectionPool()
    tcp, http = cp.tcp, cp.http
    keepalive = None
    if tcp and tcp.tcp_keepalive:
        k = tcp.tcp_keepalive
        keepalive = TcpKeepalive(k.time, k.interval, k.probes)
    return ConnectionPool(
        max_connections=tcp.max_connections if tcp else None,
        connect_timeout=tcp.connect_timeout if tcp and tcp.connect_timeout else 10.0,
        idle_timeout=tcp.idle_timeout if tcp and tcp.idle_timeout is not None else 3600.0,
        max_connection_duration=tcp.max_connection_duration if tcp else None,
        tcp_keepalive=keepalive,
        http1_max_pending_requests=http.http1_max_pending_requests if http else None,
        max_requests_per_connection=(http.max_requests_per_connection or None if http else None),
        http_idle_timeout=http.idle_timeout if http and http.idle_timeout is not None else 3600.0,
        max_retries=http.max_retries if http else None,
    )


def _outlier(od: OutlierSpec | None) -> OutlierDetection | None:
    if od is None:
        return None
    five = od.consecutive_5xx_errors
    if five is None:
        five = od.consecutive_errors if od.consecutive_errors is not None else 5
    return OutlierDetection(
        consecutive_5xx=five,
        consecutive_gateway_errors=od.consecutive_gateway_errors,
        consecutive_local_origin_failures=od.consecutive_local_origin_failures,
        split_external_local_origin_errors=bool(od.split_external_local_origin_errors),
        interval=od.interval if od.interval is not None else 10.0,
        base_ejection_time=od.base_ejection_time if od.base_ejection_time is not None else 30.0,
        max_ejection_percent=(
            od.max_ejection_percent if od.max_ejection_percent is not None else 10
        ),
        min_health_percent=od.min_health_percent or 0,
    )


def _upstream_tls(tls: ClientTLSSettings, secret: tuple[tuple[str, bytes], ...]) -> UpstreamTls:
    return UpstreamTls(
        mode=tls.mode,
        sni=tls.sni,
        ca_certificates=tls.ca_certificates,
        client_certificate=tls.client_certificate,
        private_key=tls.private_key,
        credential_name=tls.credential_name,
        subject_alt_names=tuple(tls.subject_alt_names),
        insecure_skip_verify=bool(tls.insecure_skip_verify),
        secret=secret,
    )
