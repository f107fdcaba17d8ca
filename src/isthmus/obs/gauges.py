"""isthmus's own gauges, sampled from live state when metrics are scraped.

Nothing here runs per request: each scrape calls the :class:`Sources` callbacks once.  Every
gauge carries the rule by which workers' values combine (:mod:`isthmus.obs.exposition`):
connection and request counts add up, config facts take the maximum (every worker loads the
same files), certificate expiry the minimum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from isthmus import __version__
from isthmus.obs.exposition import GaugeFamily, Merge
from isthmus.obs.secrets import certificate_expiries
from isthmus.obs.views import ClusterView, ConfigView
from isthmus.snapshot.types import Snapshot


@dataclass
class Sources:
    """Callbacks for the gauges; any left ``None`` is not exported (or, for certificates and
    the config version, is taken from the snapshot given to ``Metrics.set_snapshot``).

    * ``config`` — the reload bookkeeping (``control.reload.ConfigState``).
    * ``listener_connections`` — listener name → open downstream connections.
    * ``clusters`` — the live cluster states (``dataplane.balancer.ClusterState``).
    * ``pending_requests`` — cluster name → requests waiting for an upstream connection.
    * ``certificates`` — credential name → certificate ``notAfter`` (Unix seconds).
    * ``access_log_dropped`` — access log lines dropped because the writer fell behind.
    """

    config: Callable[[], ConfigView | None] | None = None
    listener_connections: Callable[[], Mapping[str, int]] | None = None
    clusters: Callable[[], Iterable[ClusterView]] | None = None
    pending_requests: Callable[[], Mapping[str, int]] | None = None
    certificates: Callable[[], Mapping[str, float]] | None = None
    access_log_dropped: Callable[[], int] | None = None


def _family(help_text: str, labels: list[str], merge: Merge) -> GaugeFamily:
    return {"help": help_text, "labels": labels, "merge": merge, "samples": []}


def sample(sources: Sources, snapshot: Snapshot | None, now: float) -> dict[str, GaugeFamily]:
    out: dict[str, GaugeFamily] = {}
    build = out["isthmus_build_info"] = _family("isthmus version.", ["version"], "max")
    build["samples"].append(([__version__], 1))
    _config(out, sources, snapshot)
    if sources.listener_connections is not None:
        family = out["isthmus_listener_active_connections"] = _family(
            "Open downstream connections per listener.", ["listener"], "sum"
        )
        for name, count in sorted(sources.listener_connections().items()):
            family["samples"].append(([name], count))
    if sources.clusters is not None:
        _clusters(out, sources.clusters())
    if sources.pending_requests is not None:
        family = out["isthmus_cluster_pending_requests"] = _family(
            "Requests waiting for an upstream connection.", ["cluster"], "sum"
        )
        for name, count in sorted(sources.pending_requests().items()):
            family["samples"].append(([name], count))
    if sources.certificates is not None:
        expiries: Mapping[str, float] = sources.certificates()
    else:
        expiries = certificate_expiries(snapshot) if snapshot is not None else {}
    if expiries:
        family = out["isthmus_certificate_expiry_seconds"] = _family(
            "Seconds until the credential's certificate expires (negative once expired).",
            ["credential"],
            "min",
        )
        for name, not_after in sorted(expiries.items()):
            family["samples"].append(([name], not_after - now))
    if sources.access_log_dropped is not None:
        family = out["isthmus_access_log_dropped_total"] = _family(
            "Access log entries dropped because the writer fell behind.", [], "sum"
        )
        family["samples"].append(([], sources.access_log_dropped()))
    return out


def _config(out: dict[str, GaugeFamily], sources: Sources, snapshot: Snapshot | None) -> None:
    state = sources.config() if sources.config is not None else None
    version = state.version if state is not None else snapshot.version if snapshot else None
    if version is None:
        return
    info = out["isthmus_config_info"] = _family("The config version serving.", ["version"], "max")
    info["samples"].append(([version], 1))
    if state is None:
        return
    reloads = out["isthmus_config_reloads_total"] = _family(
        "Config reloads applied (ok) or rejected, keeping the last good config.",
        ["result"],
        "max",
    )
    reloads["samples"].append((["ok"], state.reloads_ok))
    reloads["samples"].append((["rejected"], state.reloads_rejected))
    good = out["isthmus_config_last_good_timestamp_seconds"] = _family(
        "When the serving config was applied (Unix seconds).", [], "max"
    )
    good["samples"].append(([], state.last_good_time))
    rejection = state.last_rejection
    if rejection is not None:
        rejected = out["isthmus_config_last_rejected_timestamp_seconds"] = _family(
            "When a config update was last rejected (Unix seconds).", [], "max"
        )
        rejected["samples"].append(([], rejection.time))


def _clusters(out: dict[str, GaugeFamily], clusters: Iterable[ClusterView]) -> None:
    requests = out["isthmus_cluster_active_requests"] = _family(
        "Requests (or relayed TCP connections) in flight per cluster.", ["cluster"], "sum"
    )
    connections = out["isthmus_cluster_active_connections"] = _family(
        "Open upstream connections per cluster.", ["cluster"], "sum"
    )
    ejected = out["isthmus_endpoint_ejected"] = _family(
        "1 while outlier detection keeps the endpoint ejected.", ["cluster", "endpoint"], "max"
    )
    ejections = out["isthmus_endpoint_ejections_total"] = _family(
        "Times outlier detection ejected the endpoint.", ["cluster", "endpoint"], "sum"
    )
    for state in sorted(clusters, key=lambda s: s.cluster.name):
        name = state.cluster.name
        active = 0
        for endpoint in state.endpoints:
            active += endpoint.active_requests
            ejected["samples"].append(([name, endpoint.key], int(state.is_ejected(endpoint))))
            ejections["samples"].append(([name, endpoint.key], endpoint.outlier.times_ejected))
        requests["samples"].append(([name], active))
        connections["samples"].append(([name], state.active_connections))
