"""The service registry a gateway routes to, built from Services, ServiceEntries and workloads.

Endpoints come, in this order (DESIGN.md "Endpoints without a cluster"): Endpoints /
EndpointSlice resources of the Service; WorkloadEntries and Pods whose labels match the
Service selector; an ExternalName resolved by DNS at connect time; ServiceEntry endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from isthmus.model import (
    DestinationRule,
    Pod,
    ResourceSet,
    Service,
    ServiceEntry,
    WorkloadEntry,
)
from isthmus.refs import ResourceRef
from isthmus.snapshot.match import host_matches
from isthmus.snapshot.types import ClusterType, Endpoint
from isthmus.translate.hosts import fqdn, service_fqdn
from isthmus.translate.identity import selects

ROOT_NAMESPACE = "istio-system"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class ServicePortInfo:
    port: int
    name: str
    target_port: int | str | None
    protocol: str


@dataclass(frozen=True)
class ServiceInfo:
    """One host in the registry with its ports and where its endpoints come from."""

    host: str
    namespace: str
    ports: tuple[ServicePortInfo, ...]
    origin: ResourceRef
    service: Service | None = None
    entry: ServiceEntry | None = None

    def port(self, number: int) -> ServicePortInfo | None:
        for p in self.ports:
            if p.port == number:
                return p
        return None

    @property
    def cluster_type(self) -> ClusterType:
        if self.service is not None:
            return "STRICT_DNS" if self.service.spec.type == "ExternalName" else "EDS"
        assert self.entry is not None
        resolution = self.entry.spec.resolution
        if resolution == "DNS":
            return "STRICT_DNS"
        if resolution == "DNS_ROUND_ROBIN":
            return "LOGICAL_DNS"
        if resolution == "NONE":
            return "ORIGINAL_DST"
        return "EDS" if self.entry.spec.workload_selector else "STATIC"


@dataclass
class Registry:
    resources: ResourceSet
    services: dict[str, ServiceInfo] = field(default_factory=dict)

    @classmethod
    def build(cls, resources: ResourceSet) -> Registry:
        registry = cls(resources)
        for entry in resources.service_entries:
            ports = tuple(
                ServicePortInfo(p.number, p.name, p.target_port, p.protocol or "TCP")
                for p in entry.spec.ports
            )
            for host in entry.spec.hosts:
                name = fqdn(host, entry.namespace)
                registry.services.setdefault(
                    name, ServiceInfo(name, entry.namespace, ports, entry.ref, entry=entry)
                )
        # Kubernetes Services win over ServiceEntries for the same host, as in Istio.
        for svc in resources.services:
            ports = tuple(
                ServicePortInfo(p.port, p.name, p.target_port, p.protocol) for p in svc.spec.ports
            )
            name = service_fqdn(svc.name, svc.namespace)
            registry.services[name] = ServiceInfo(name, svc.namespace, ports, svc.ref, service=svc)
        return registry

    def lookup(self, host: str) -> ServiceInfo | None:
        found = self.services.get(host)
        if found is not None:
            return found
        for name, info in self.services.items():
            if name.startswith("*") and host_matches(name, host):
                return info
        return None

    # --- endpoints ---------------------------------------------------------------------------

    def endpoints(self, info: ServiceInfo, port: ServicePortInfo) -> tuple[Endpoint, ...]:
        if info.service is not None:
            return self._service_endpoints(info.service, port)
        assert info.entry is not None
        return self._entry_endpoints(info.entry, info.host, port)

    def _service_endpoints(self, svc: Service, port: ServicePortInfo) -> tuple[Endpoint, ...]:
        if svc.spec.type == "ExternalName":
            name = svc.spec.external_name or ""
            return (Endpoint(name, port.port, {}, svc.ref, resolve=True),) if name else ()
        found = self._endpoints_resources(svc, port)
        if found is not None:
            return found
        if not svc.spec.selector:
            return ()
        selector = svc.spec.selector
        out: list[Endpoint] = []
        for we in self.resources.workload_entries:
            if we.namespace == svc.namespace and selects(selector, we.spec.labels):
                out.extend(_workload_endpoint(we, port))
        for pod in self.resources.pods:
            if pod.namespace == svc.namespace and selects(selector, pod.labels):
                out.extend(_pod_endpoint(pod, port))
        return tuple(out)

    def _endpoints_resources(
        self, svc: Service, port: ServicePortInfo
    ) -> tuple[Endpoint, ...] | None:
        """Endpoints/EndpointSlices named for the Service, or None when there are none."""
        seen = False
        out: list[Endpoint] = []
        pods = {(p.namespace, p.name): p for p in self.resources.pods}
        for eps in self.resources.endpoints:
            if eps.namespace != svc.namespace or eps.name != svc.name:
                continue
            seen = True
            for subset in eps.subsets:
                number = _match_port([(p.name, p.port) for p in subset.ports], port)
                if number is None:
                    continue
                for addr in subset.addresses:
                    pod = _target_pod(pods, addr.target_ref, svc.namespace)
                    out.append(Endpoint(addr.ip, number, pod.labels if pod else {}, eps.ref))
        for slc in self.resources.endpoint_slices:
            if slc.namespace != svc.namespace or slc.labels.get(SERVICE_NAME_LABEL) != svc.name:
                continue
            seen = True
            number = _match_port([(p.name, p.port or 0) for p in slc.ports], port)
            if number is None:
                continue
            for ep in slc.endpoints:
                if ep.conditions is not None and ep.conditions.ready is False:
                    continue
                pod = _target_pod(pods, ep.target_ref, svc.namespace)
                for address in ep.addresses:
                    out.append(Endpoint(address, number, pod.labels if pod else {}, slc.ref))
        return tuple(out) if seen else None

    def _entry_endpoints(
        self, entry: ServiceEntry, host: str, port: ServicePortInfo
    ) -> tuple[Endpoint, ...]:
        spec = entry.spec
        dns = spec.resolution in ("DNS", "DNS_ROUND_ROBIN")
        target = port.target_port if isinstance(port.target_port, int) else port.port
        out: list[Endpoint] = []
        for ep in spec.endpoints:
            number = ep.ports.get(port.name, target)
            if ep.address:
                out.append(Endpoint(ep.address, number, ep.labels, entry.ref, resolve=dns))
        if spec.workload_selector is not None:
            for we in self.resources.workload_entries:
                if we.namespace == entry.namespace and selects(
                    spec.workload_selector.match_labels, we.spec.labels
                ):
                    out.extend(_workload_endpoint(we, port))
        if not out and dns:
            out.append(Endpoint(host, target, {}, entry.ref, resolve=True))
        return tuple(out)

    # --- destination rules -------------------------------------------------------------------

    def destination_rule(self, host: str, client_namespace: str) -> DestinationRule | None:
        """The DestinationRule that applies to ``host`` for a gateway in ``client_namespace``.

        Istio looks in the client's namespace, then the service's, then the root namespace;
        within one namespace an exact host beats a wildcard, and older beats newer.
        """
        info = self.lookup(host)
        service_ns = info.namespace if info else None
        best: tuple[tuple[int, int, int], DestinationRule] | None = None
        for dr in self.resources.destination_rules:
            if not _exported(dr.spec.export_to, dr.namespace, client_namespace):
                continue
            pattern = fqdn(dr.spec.host, dr.namespace)
            if not host_matches(pattern, host):
                continue
            if dr.namespace == client_namespace:
                scope = 0
            elif dr.namespace == service_ns:
                scope = 1
            elif dr.namespace == ROOT_NAMESPACE:
                scope = 2
            else:
                scope = 3
            rank = (scope, 0 if pattern == host else 1, dr.order)
            if best is None or rank < best[0]:
                best = (rank, dr)
        return best[1] if best else None


def _exported(export_to: list[str], namespace: str, client: str) -> bool:
    if not export_to or "*" in export_to:
        return True
    return client in export_to or ("." in export_to and namespace == client)


def _match_port(ports: list[tuple[str, int]], port: ServicePortInfo) -> int | None:
    """The endpoint port for a Service port: by name, or the only port when unnamed."""
    for name, number in ports:
        if name == port.name:
            return number
    if len(ports) == 1 and (not port.name or not ports[0][0]):
        return ports[0][1]
    return None


def _target_pod(pods: Mapping[tuple[str, str], Pod], target: Any, namespace: str) -> Pod | None:
    if target is None or getattr(target, "kind", None) not in (None, "Pod"):
        return None
    return pods.get((target.namespace or namespace, target.name or ""))


def _workload_endpoint(we: WorkloadEntry, port: ServicePortInfo) -> list[Endpoint]:
    if not we.spec.address:
        return []
    number = we.spec.ports.get(port.name)
    if number is None:
        number = port.target_port if isinstance(port.target_port, int) else port.port
    labels = dict(we.spec.labels)
    return [Endpoint(we.spec.address, number, labels, we.ref, weight=we.spec.weight or 1)]


def _pod_endpoint(pod: Pod, port: ServicePortInfo) -> list[Endpoint]:
    ip = pod.status.pod_ip
    if not ip:
        return []
    number: int | None
    if isinstance(port.target_port, int):
        number = port.target_port
    elif isinstance(port.target_port, str):
        number = _container_port(pod.spec, port.target_port)
    else:
        number = port.port
    return [Endpoint(ip, number, dict(pod.labels), pod.ref)] if number else []


def _container_port(spec: Any, name: str) -> int | None:
    if not isinstance(spec, dict):
        return None
    for container in spec.get("containers") or []:
        for cp in (container or {}).get("ports") or []:
            if isinstance(cp, dict) and cp.get("name") == name:
                value = cp.get("containerPort")
                return value if isinstance(value, int) else None
    return None
