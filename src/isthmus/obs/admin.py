"""The admin API (Envoy's port 15000) and the status port (pilot-agent's 15021).

Admin: ``/config_dump`` (JSON, see :mod:`isthmus.obs.configdump`), ``/listeners``,
``/clusters`` (endpoints with health and outlier state; ``?format=json`` in the shape of
Envoy's ``ClusterStatuses``), ``/stats`` (``name: value``; ``?filter=REGEX``),
``/stats/prometheus``, ``/server_info`` and ``/ready`` (200 ``LIVE``, else 503 and the state).
Status: ``/healthz/ready`` (200 once the first snapshot serves, 503 before and while
draining).  Metrics: ``/stats/prometheus``.

Everything is read through an :class:`AdminProvider`, so this module knows the data plane only
by the views in :mod:`isthmus.obs.views`.  Start the servers with :func:`start`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from isthmus import __version__
from isthmus.obs.configdump import config_dump, ref_json
from isthmus.obs.exposition import MetricsState, render_state
from isthmus.obs.httpserver import Handler, Query, Response, serve
from isthmus.obs.status import cluster_statuses, clusters_text, stat_lines
from isthmus.obs.views import ClusterView, ConfigView, IdentityView
from isthmus.snapshot.types import Snapshot

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AdminProvider(Protocol):
    """What the admin API reads.  Every member is read per admin request, never cached."""

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot serving now; ``None`` before the first one is bound."""

    @property
    def config(self) -> ConfigView | None:
        """Reload bookkeeping (``control.reload.ConfigState``), if reloads are tracked."""

    @property
    def identity(self) -> IdentityView:
        """The gateway workload (``translate.identity.GatewayIdentity``)."""

    @property
    def ready(self) -> bool:
        """True once the first snapshot's listeners are bound and serving."""

    @property
    def draining(self) -> bool:
        """True once shutdown began: listeners closed, connections finishing."""

    @property
    def started(self) -> float:
        """Unix time the gateway started."""

    def cluster_state(self, name: str) -> ClusterView | None:
        """The live state of cluster ``name`` (``None``: no traffic yet, shown as zeros)."""

    def listener_addresses(self) -> Mapping[str, tuple[str, int]]:
        """Listener name → the address actually bound (``Gateway.addresses()``)."""

    def listener_connections(self) -> Mapping[str, int]:
        """Listener name → open downstream connections."""

    def metrics_state(self) -> MetricsState | None:
        """The metrics to show: ``Metrics.state()``, or with ``--workers N`` the workers'
        states merged by ``exposition.merge_states``."""


def server_state(provider: AdminProvider) -> str:
    """Envoy's server state: ``PRE_INITIALIZING`` until serving, ``LIVE``, ``DRAINING``."""
    if provider.draining:
        return "DRAINING"
    if not provider.ready or provider.snapshot is None:
        return "PRE_INITIALIZING"
    return "LIVE"


def _format(query: Query) -> str:
    return query.get("format", ["text"])[0]


class AdminApi:
    """The endpoints as plain functions of the query string; tests may call them directly."""

    def __init__(self, provider: AdminProvider) -> None:
        self.provider = provider
        self.admin_routes: dict[str, Handler] = {
            "/": self.index,
            "/config_dump": self.config_dump,
            "/listeners": self.listeners,
            "/clusters": self.clusters,
            "/stats": self.stats,
            "/stats/prometheus": self.prometheus,
            "/server_info": self.server_info,
            "/ready": self.ready,
        }
        self.status_routes: dict[str, Handler] = {"/healthz/ready": self.healthz_ready}
        self.metrics_routes: dict[str, Handler] = {"/stats/prometheus": self.prometheus}

    # --- admin port ----------------------------------------------------------------------------

    def index(self, query: Query) -> Response:
        paths = "".join(f"  {p}\n" for p in self.admin_routes)
        return Response.text(f"isthmus {__version__} admin\n{paths}")

    def config_dump(self, query: Query) -> Response:
        p = self.provider
        state = server_state(p)
        return Response.json(
            config_dump(p.snapshot, identity=p.identity, config=p.config, state=state)
        )

    def listeners(self, query: Query) -> Response:
        snapshot = self.provider.snapshot
        bound = self.provider.listener_addresses()
        rows = [
            (lst.name, *bound.get(lst.name, (lst.address, lst.port)))
            for lst in (snapshot.listeners if snapshot is not None else ())
        ]
        if _format(query) == "json":
            statuses = [
                {
                    "name": name,
                    "local_address": {"socket_address": {"address": host, "port_value": port}},
                }
                for name, host, port in rows
            ]
            return Response.json({"listener_statuses": statuses})
        return Response.text("".join(f"{name}::{host}:{port}\n" for name, host, port in rows))

    def clusters(self, query: Query) -> Response:
        statuses = cluster_statuses(self.provider.snapshot, self.provider.cluster_state)
        if _format(query) == "json":
            return Response.json({"cluster_statuses": statuses})
        return Response.text(clusters_text(statuses))

    def stats(self, query: Query) -> Response:
        import re

        if _format(query) == "prometheus":
            return self.prometheus(query)
        p = self.provider
        lines = stat_lines(
            state=server_state(p),
            uptime=time.time() - p.started,
            config=p.config,
            listener_connections=p.listener_connections(),
            clusters=cluster_statuses(p.snapshot, p.cluster_state),
            metrics=p.metrics_state(),
        )
        pattern = query.get("filter", [""])[0]
        if pattern:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                return Response.text(f"invalid filter regex: {exc}\n", 400)
            lines = [line for line in lines if regex.search(line.split(": ", 1)[0])]
        return Response.text("".join(line + "\n" for line in lines))

    def prometheus(self, query: Query) -> Response:
        state = self.provider.metrics_state()
        return Response(200, PROMETHEUS_TYPE, render_state(state) if state is not None else b"")

    def server_info(self, query: Query) -> Response:
        p = self.provider
        uptime = f"{int(time.time() - p.started)}s"
        identity = p.identity
        labels = dict(identity.labels)
        snapshot = p.snapshot
        info: dict[str, Any] = {
            "version": f"isthmus/{__version__}",
            "state": server_state(p),
            "uptime_current_epoch": uptime,
            "uptime_all_epochs": uptime,
            "config_version": snapshot.version if snapshot is not None else None,
            "node": {
                "id": f"router~{identity.namespace}",
                "cluster": f"{labels.get('app', 'istio-ingressgateway')}.{identity.namespace}",
                "metadata": {
                    "NAMESPACE": identity.namespace,
                    "LABELS": labels,
                    "REVISION": identity.revision,
                },
            },
            "gateways": [ref_json(r) for r in snapshot.gateways] if snapshot is not None else [],
        }
        return Response.json(info)

    def ready(self, query: Query) -> Response:
        state = server_state(self.provider)
        return Response.text(f"{state}\n", 200 if state == "LIVE" else 503)

    # --- status port ---------------------------------------------------------------------------

    def healthz_ready(self, query: Query) -> Response:
        state = server_state(self.provider)
        if state == "LIVE":
            return Response.text("", 200)
        reason = "draining" if state == "DRAINING" else "no config served yet"
        return Response.text(f"not ready: {reason}\n", 503)


async def start(
    provider: AdminProvider,
    *,
    admin: tuple[str, int] | None = ("127.0.0.1", 15000),
    status: tuple[str, int] | None = ("0.0.0.0", 15021),
    metrics: tuple[str, int] | None = None,
) -> list[asyncio.Server]:
    """Bind the admin, status and (optionally) metrics ports; ``None`` skips one.

    Returns the servers (close them to stop); a port of 0 binds any free port, and
    ``server.sockets[0].getsockname()`` tells which.
    """
    api = AdminApi(provider)
    servers: list[asyncio.Server] = []
    try:
        for where, routes in (
            (admin, api.admin_routes),
            (status, api.status_routes),
            (metrics, api.metrics_routes),
        ):
            if where is not None:
                servers.append(await serve(routes, where[0], where[1]))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers
