"""Read-only views of live gateway state that metrics and the admin API read at scrape time.

They are structural (``typing.Protocol``): the data plane's ``ClusterState``/``EndpointState``/
``OutlierStatus``, the control plane's ``ConfigState`` and the translator's ``GatewayIdentity``
satisfy them as they are, so this package needs no import of those modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from isthmus.snapshot.types import Cluster, Endpoint


class RejectionView(Protocol):
    """One rejected config update (``control.reload.Rejection``)."""

    @property
    def time(self) -> float: ...
    @property
    def problems(self) -> Sequence[str]: ...
    @property
    def serving_version(self) -> str: ...


class ConfigView(Protocol):
    """Config reload bookkeeping (``control.reload.ConfigState``)."""

    @property
    def version(self) -> str: ...
    @property
    def last_good_time(self) -> float: ...
    @property
    def reloads_ok(self) -> int: ...
    @property
    def reloads_rejected(self) -> int: ...
    @property
    def last_rejection(self) -> RejectionView | None: ...


class OutlierView(Protocol):
    """An endpoint's outlier-detection counters (``dataplane.outlier.OutlierStatus``)."""

    @property
    def consecutive_5xx(self) -> int: ...
    @property
    def consecutive_gateway_errors(self) -> int: ...
    @property
    def consecutive_local_origin_failures(self) -> int: ...
    @property
    def ejected_until(self) -> float | None: ...
    @property
    def times_ejected(self) -> int: ...


class EndpointView(Protocol):
    """One endpoint's live counters (``dataplane.balancer.EndpointState``)."""

    @property
    def key(self) -> str: ...
    @property
    def endpoint(self) -> Endpoint: ...
    @property
    def active_requests(self) -> int: ...
    @property
    def active_connections(self) -> int: ...
    @property
    def outlier(self) -> OutlierView: ...


class ClusterView(Protocol):
    """One cluster's live state (``dataplane.balancer.ClusterState``)."""

    @property
    def cluster(self) -> Cluster: ...
    @property
    def endpoints(self) -> Sequence[EndpointView]: ...
    @property
    def active_connections(self) -> int: ...

    def is_ejected(self, endpoint: Any) -> bool: ...


class IdentityView(Protocol):
    """Who this gateway is (``translate.identity.GatewayIdentity``)."""

    @property
    def namespace(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def revision(self) -> str | None: ...
