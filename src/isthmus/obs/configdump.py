"""The snapshot as JSON for ``/config_dump``: every object with its name and its source.

Serialization is generic over the snapshot's dataclasses, with three exceptions that keep the
dump safe and readable: compiled regexes are shown by their pattern, secret bytes are never
shown (a TLS setting lists its credential names; :mod:`isthmus.obs.secrets` gives the
certificate facts), and each match carries the one-line description ``explain`` prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Mapping
from typing import Any

from isthmus import __version__
from isthmus.obs.secrets import secret_items
from isthmus.obs.views import ConfigView, IdentityView, RejectionView
from isthmus.refs import ResourceRef
from isthmus.snapshot.match import L4Match, RouteMatch
from isthmus.snapshot.types import (
    DirectResponseAction,
    DownstreamTls,
    ForwardAction,
    HttpConnectionManager,
    RedirectAction,
    Snapshot,
    TcpProxy,
    UpstreamTls,
)

# Objects that fill a union-typed field say which member they are.
_TYPES: dict[type, str] = {
    HttpConnectionManager: "http_connection_manager",
    TcpProxy: "tcp_proxy",
    ForwardAction: "forward",
    RedirectAction: "redirect",
    DirectResponseAction: "direct_response",
}


def ref_json(ref: ResourceRef) -> dict[str, Any]:
    """``{"kind", "namespace", "name", "location"}``: the resource and where it was read."""
    return {
        "kind": ref.kind,
        "namespace": ref.namespace,
        "name": ref.name,
        "location": ref.location,
    }


def _dataclass(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = _TYPES.get(type(obj))
    if kind is not None:
        out["type"] = kind
    for f in dataclasses.fields(obj):
        if f.name.startswith("_"):
            continue
        out[f.name] = to_json(getattr(obj, f.name))
    return out


def to_json(obj: Any) -> Any:
    """A JSON-able rendering of a snapshot object (see the module docstring)."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, ResourceRef):
        return ref_json(obj)
    if isinstance(obj, DownstreamTls):
        out = _dataclass(dataclasses.replace(obj, secrets={}))
        del out["secrets"]
        out["credentials"] = {
            name: sorted(material) for name, material in sorted(obj.secrets.items())
        }
        return out
    if isinstance(obj, UpstreamTls):
        out = _dataclass(dataclasses.replace(obj, secret=()))
        out["secret"] = sorted(key for key, _value in obj.secret)
        return out
    if isinstance(obj, DirectResponseAction):
        body = obj.body.decode("utf-8", "replace")
        return {"type": "direct_response", "status": obj.status, "body": body}
    if isinstance(obj, RouteMatch | L4Match):
        out = _dataclass(obj)
        out["description"] = obj.describe()
        return out
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _dataclass(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list | frozenset | set):
        return [to_json(v) for v in obj]
    if isinstance(obj, bytes):
        return {"redacted_bytes": len(obj)}
    if isinstance(obj, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(obj)
    pattern = getattr(obj, "pattern", None)
    if isinstance(pattern, str):
        return pattern
    return str(obj)


def _time(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rejection_json(rejection: RejectionView) -> dict[str, Any]:
    return {
        "time": rejection.time,
        "time_iso": _time(rejection.time),
        "problems": list(rejection.problems),
        "serving_version": rejection.serving_version,
    }


def config_dump(
    snapshot: Snapshot | None,
    *,
    identity: IdentityView | None = None,
    config: ConfigView | None = None,
    state: str = "LIVE",
) -> dict[str, Any]:
    """The whole dump: snapshot (listeners → filter chains → routes; clusters → endpoints),
    certificate facts, and the config bookkeeping including the last rejected update."""
    out: dict[str, Any] = {"isthmus_version": __version__, "state": state}
    if identity is not None:
        out["identity"] = {
            "namespace": identity.namespace,
            "labels": dict(identity.labels),
            "revision": identity.revision,
        }
    if config is not None:
        last = config.last_rejection
        out["config"] = {
            "version": config.version,
            "last_good_time": config.last_good_time,
            "last_good_time_iso": _time(config.last_good_time),
            "reloads_ok": config.reloads_ok,
            "reloads_rejected": config.reloads_rejected,
        }
        out["last_rejected"] = rejection_json(last) if last is not None else None
    if snapshot is None:
        out["version"] = None
        return out
    out["version"] = snapshot.version
    out["gateways"] = [ref_json(r) for r in snapshot.gateways]
    out["listeners"] = [to_json(listener) for listener in snapshot.listeners]
    out["clusters"] = [to_json(snapshot.clusters[name]) for name in sorted(snapshot.clusters)]
    out["secrets"] = [item.facts() for item in secret_items(snapshot)]
    if snapshot.mesh is not None:
        out["mesh"] = to_json(snapshot.mesh)
    return out
