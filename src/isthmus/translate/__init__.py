"""``translate(resources, identity)``: a pure function from resources to a routing snapshot.

No I/O, no clock, no logging: problems come back as diagnostics.
"""

from __future__ import annotations

import copy
import hashlib

from isthmus.model import ResourceSet
from isthmus.snapshot.types import Snapshot
from isthmus.translate.clusters import ClusterBuilder
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.gateways import gateway_services, place_servers, selected_gateways
from isthmus.translate.identity import REVISION_LABEL, GatewayIdentity
from isthmus.translate.listeners import ListenerBuilder
from isthmus.translate.mesh import build_mesh
from isthmus.translate.registry import Registry
from isthmus.translate.routes import RouteBuilder

__all__ = ["Diagnostic", "GatewayIdentity", "translate"]


def translate(
    resources: ResourceSet,
    identity: GatewayIdentity | None = None,
    version: str | None = None,
    *,
    mesh: bool = False,
) -> tuple[Snapshot, list[Diagnostic]]:
    """``mesh`` also builds the outbound routes of the local explicit proxy (``--mesh-port``)."""
    identity = identity or GatewayIdentity()
    resources = in_revision(resources, identity.revision)
    registry = Registry.build(resources)
    clusters = ClusterBuilder(registry, identity.namespace)
    routes = RouteBuilder(resources, clusters)
    gateways = selected_gateways(resources, identity)
    groups, diagnostics = place_servers(gateways, gateway_services(resources, identity), identity)
    listeners = ListenerBuilder(resources, identity, routes)
    built = tuple(listeners.build(group) for group in groups)
    outbound = build_mesh(resources, registry, clusters, routes) if mesh else None
    for extra in (listeners.diagnostics, routes.diagnostics, clusters.diagnostics):
        for diag in extra:
            if diag not in diagnostics:
                diagnostics.append(diag)
    snapshot = Snapshot(
        version=version or _fingerprint(resources),
        listeners=built,
        clusters=dict(clusters.clusters),
        gateways=tuple(g.ref for g in gateways),
        mesh=outbound,
    )
    return snapshot, diagnostics


ISTIO_CONFIG_KINDS = (
    "gateways",
    "virtual_services",
    "destination_rules",
    "service_entries",
    "workload_entries",
)


def in_revision(resources: ResourceSet, revision: str | None) -> ResourceSet:
    """The Istio config a gateway of ``revision`` applies.

    Istio's rule (pkg/config/model.go ``ObjectInRevision``): an object without an
    ``istio.io/rev`` label is global and always included; a control plane without a revision
    includes everything; otherwise only objects labelled with its revision count.  So a canary
    gateway (``--revision canary``) serves the shared config plus canary-only objects, and the
    stable one ignores what is labelled for the canary.
    """
    if not revision:
        return resources
    filtered = copy.copy(resources)
    for kind in ISTIO_CONFIG_KINDS:
        objects = getattr(resources, kind)
        setattr(
            filtered,
            kind,
            [o for o in objects if o.labels.get(REVISION_LABEL, revision) == revision],
        )
    return filtered


def _fingerprint(resources: ResourceSet) -> str:
    """A content hash of the inputs: the same config always gets the same version."""
    digest = hashlib.sha256()
    for obj in resources.all():
        digest.update(obj.model_dump_json(by_alias=True).encode())
    return digest.hexdigest()[:12]
