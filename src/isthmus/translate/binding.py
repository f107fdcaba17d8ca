"""Which VirtualServices bind to which Gateway servers (Istio's host and gateway rules)."""

from __future__ import annotations

from isthmus.model import ResourceSet, VirtualService
from isthmus.translate.gateways import BoundServer
from isthmus.translate.hosts import fqdn, narrower, overlap, resolve_gateway_ref


def vs_gateways(vs: VirtualService) -> list[str]:
    """Resolved ``gateways``; none at all means ``mesh`` only (never an ingress)."""
    if not vs.spec.gateways:
        return ["mesh"]
    return [resolve_gateway_ref(g, vs.namespace) for g in vs.spec.gateways]


def vs_hosts(vs: VirtualService) -> list[str]:
    return [fqdn(h, vs.namespace) for h in vs.spec.hosts]


def match_applies(match_gateways: list[str], vs: VirtualService, gateway_key: str | None) -> bool:
    """Per-match ``gateways`` narrow a rule; empty inherits the VirtualService's.

    ``gateway_key`` None (analysis of every rule) lets every match apply.
    """
    if not match_gateways or gateway_key is None:
        return True
    return gateway_key in (resolve_gateway_ref(g, vs.namespace) for g in match_gateways)


def bound_domains(vs: VirtualService, server: BoundServer) -> list[str]:
    """The hosts a VirtualService serves on a server: each overlapping pair, narrowed."""
    if server.key not in vs_gateways(vs):
        return []
    allowed = server.admits(vs.namespace)
    out: list[str] = []
    for host in vs_hosts(vs):
        for server_host in allowed:
            if overlap(host, server_host):
                domain = narrower(host, server_host)
                if domain not in out:
                    out.append(domain)
    return out


def virtual_services(resources: ResourceSet) -> list[VirtualService]:
    """Root VirtualServices (delegates have no hosts), oldest first."""
    return sorted((v for v in resources.virtual_services if v.spec.hosts), key=lambda v: v.order)
