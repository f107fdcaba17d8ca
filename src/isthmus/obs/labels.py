"""Istio's standard metric labels, and how a gateway fills them.

Names, order and fallbacks follow istio/proxy ``source/extensions/filters/http/istio_stats/
istio_stats.cc`` (the ``ClientSidecar`` branch, which is what ``reporter="source"`` at a gateway
means): missing values are ``unknown``, a missing canonical revision is ``latest``,
``grpc_response_status`` is empty for plain HTTP, and ``connection_security_policy`` is
``unknown`` (the source reporter never learns it).  See also
https://istio.io/latest/docs/reference/config/metrics/.

Envoy learns the destination workload from the upstream's peer metadata; isthmus has the same
facts in the snapshot (the endpoint's labels and the resource it came from), so the labels read
as if the backends ran sidecars.  All of this runs once per new (cluster, endpoint) pair, never
per request.
"""

from __future__ import annotations

from collections.abc import Mapping

from isthmus.snapshot.types import Cluster, Endpoint, Snapshot

UNKNOWN = "unknown"
LATEST = "latest"
NO_FLAGS = "-"
SECURITY_POLICY = "unknown"

SOURCE_LABELS = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
)
DESTINATION_LABELS = (
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
)
HTTP_LABELS = (
    *SOURCE_LABELS,
    *DESTINATION_LABELS,
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
TCP_LABELS = (
    *SOURCE_LABELS,
    *DESTINATION_LABELS,
    "request_protocol",
    "response_flags",
    "connection_security_policy",
)

_CANONICAL_NAME = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
_CANONICAL_REVISION = (
    "service.istio.io/canonical-revision",
    "app.kubernetes.io/version",
    "version",
)
_WORKLOAD_KINDS = frozenset(("Pod", "WorkloadEntry", "Endpoints", "EndpointSlice"))


def _first(labels: Mapping[str, str], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return ""


def source_labels(
    workload: str,
    namespace: str,
    labels: Mapping[str, str],
    cluster_id: str,
    principal: str = UNKNOWN,
) -> tuple[str, ...]:
    """The gateway's own side, in :data:`SOURCE_LABELS` order.

    A real ``istio-ingressgateway`` pod carries ``app: istio-ingressgateway``; a gateway whose
    labels have no ``app`` reports its workload name as the app, so dashboards filtering on
    ``source_app`` still find it.
    """
    return (
        "source",
        workload,
        _first(labels, _CANONICAL_NAME) or workload,
        _first(labels, _CANONICAL_REVISION) or LATEST,
        namespace,
        principal,
        labels.get("app") or workload,
        labels.get("version") or UNKNOWN,
        cluster_id,
    )


def workload_name(endpoint: Endpoint) -> str:
    """The workload behind an endpoint: a Pod's Deployment (its name less the ReplicaSet hash
    and pod suffix), a WorkloadEntry's name, else the ``app`` label."""
    origin = endpoint.origin
    labels = endpoint.labels
    if origin is not None and origin.kind == "Pod":
        pod_hash = labels.get("pod-template-hash")
        marker = f"-{pod_hash}-" if pod_hash else ""
        if marker and marker in origin.name:
            return origin.name.rsplit(marker, 1)[0]
        return origin.name
    if origin is not None and origin.kind == "WorkloadEntry":
        return origin.name
    return labels.get("app") or UNKNOWN


def service_labels(cluster: Cluster | None, cluster_name: str) -> tuple[str, str, str]:
    """``(destination_service, destination_service_name, destination_service_namespace)``.

    Like Istio's cluster metadata: a Kubernetes Service's own name and namespace, a
    ServiceEntry's host as its name; else the FQDN's first label and second label when the host
    is ``name.namespace.svc...``.
    """
    host = cluster.service if cluster is not None else _host_of(cluster_name)
    if not host:
        return UNKNOWN, UNKNOWN, UNKNOWN
    origin = cluster.service_origin if cluster is not None else None
    if origin is not None and origin.kind == "Service":
        return host, origin.name, origin.namespace
    if origin is not None and origin.kind == "ServiceEntry":
        return host, host, origin.namespace
    parts = host.split(".")
    namespace = parts[1] if len(parts) > 2 and parts[2] == "svc" else UNKNOWN
    return host, parts[0], namespace


def _host_of(cluster_name: str) -> str:
    parts = cluster_name.split("|")
    return parts[3] if len(parts) == 4 else ""


def destination_labels(
    snapshot: Snapshot | None, cluster_name: str, upstream: str, cluster_id: str
) -> tuple[str, ...]:
    """The destination side, in :data:`DESTINATION_LABELS` order, for the cluster named
    ``cluster_name`` (``""`` when there was none) and the endpoint keyed ``upstream``
    (``address:port`` as in the snapshot; ``""`` when none was chosen)."""
    cluster = snapshot.clusters.get(cluster_name) if snapshot is not None and cluster_name else None
    endpoint = None
    if cluster is not None and upstream:
        endpoint = next((e for e in cluster.endpoints if e.key == upstream), None)
    service, service_name, service_namespace = service_labels(cluster, cluster_name)
    if endpoint is None or endpoint.origin is None:
        return (
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            UNKNOWN,
            service,
            UNKNOWN,
            LATEST,
            service_name,
            service_namespace,
            UNKNOWN,
        )
    labels = endpoint.labels
    workload = workload_name(endpoint)
    namespace = endpoint.origin.namespace
    in_cluster = endpoint.origin.kind in _WORKLOAD_KINDS
    canonical = _first(labels, _CANONICAL_NAME) or workload
    return (
        workload,
        namespace,
        UNKNOWN,
        labels.get("app") or UNKNOWN,
        labels.get("version") or UNKNOWN,
        service,
        canonical,
        _first(labels, _CANONICAL_REVISION) or LATEST,
        service_name,
        service_namespace if service_namespace != UNKNOWN else namespace,
        cluster_id if in_cluster else UNKNOWN,
    )
