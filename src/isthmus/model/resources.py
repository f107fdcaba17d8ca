"""From YAML documents to typed resources: kind dispatch, validation and error reporting."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from isthmus.model.destinationrule import DestinationRuleSpec
from isthmus.model.errors import ConfigError, format_path
from isthmus.model.gateway import GatewaySpec
from isthmus.model.kube import Endpoints, EndpointSlice, Pod, Secret, Service
from isthmus.model.meta import KubeObject
from isthmus.model.serviceentry import ServiceEntrySpec, WorkloadEntrySpec
from isthmus.model.virtualservice import VirtualServiceSpec
from isthmus.model.yamlload import Document, iter_items, load_documents, read_documents

ISTIO_NETWORKING_VERSIONS = frozenset(
    f"networking.istio.io/{v}" for v in ("v1alpha3", "v1beta1", "v1")
)


class Gateway(KubeObject):
    kind: Literal["Gateway"]
    spec: GatewaySpec = GatewaySpec()


class VirtualService(KubeObject):
    kind: Literal["VirtualService"]
    spec: VirtualServiceSpec = VirtualServiceSpec()


class DestinationRule(KubeObject):
    kind: Literal["DestinationRule"]
    spec: DestinationRuleSpec


class ServiceEntry(KubeObject):
    kind: Literal["ServiceEntry"]
    spec: ServiceEntrySpec


class WorkloadEntry(KubeObject):
    kind: Literal["WorkloadEntry"]
    spec: WorkloadEntrySpec


KINDS: dict[str, tuple[type[KubeObject], frozenset[str]]] = {
    "Gateway": (Gateway, ISTIO_NETWORKING_VERSIONS),
    "VirtualService": (VirtualService, ISTIO_NETWORKING_VERSIONS),
    "DestinationRule": (DestinationRule, ISTIO_NETWORKING_VERSIONS),
    "ServiceEntry": (ServiceEntry, ISTIO_NETWORKING_VERSIONS),
    "WorkloadEntry": (WorkloadEntry, ISTIO_NETWORKING_VERSIONS),
    "Service": (Service, frozenset({"v1"})),
    "Endpoints": (Endpoints, frozenset({"v1"})),
    "EndpointSlice": (EndpointSlice, frozenset({"discovery.k8s.io/v1"})),
    "Pod": (Pod, frozenset({"v1"})),
    "Secret": (Secret, frozenset({"v1"})),
}

# Kinds found in files copied from the Istio docs: they load, and a gateway has no use for them.
IGNORED_KINDS = frozenset(
    {
        "Deployment",
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "IstioOperator",
        "ConfigMap",
        "DaemonSet",
        "StatefulSet",
        "ReplicaSet",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
        "CronJob",
    }
)
# Istio kinds that configure sidecars or security, not what a gateway routes.
UNSUPPORTED_ISTIO_KINDS = frozenset(
    {
        "Sidecar",
        "EnvoyFilter",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
        "ProxyConfig",
        "WasmPlugin",
        "WorkloadGroup",
    }
)


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth telling that is not an error (an ignored kind, a duplicate)."""

    level: str
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ResourceSet:
    """Every typed resource of one config, by kind, in load order."""

    gateways: list[Gateway] = field(default_factory=list)
    virtual_services: list[VirtualService] = field(default_factory=list)
    destination_rules: list[DestinationRule] = field(default_factory=list)
    service_entries: list[ServiceEntry] = field(default_factory=list)
    workload_entries: list[WorkloadEntry] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    endpoints: list[Endpoints] = field(default_factory=list)
    endpoint_slices: list[EndpointSlice] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    _FIELD_BY_KIND: typing.ClassVar[dict[str, str]] = {
        "Gateway": "gateways",
        "VirtualService": "virtual_services",
        "DestinationRule": "destination_rules",
        "ServiceEntry": "service_entries",
        "WorkloadEntry": "workload_entries",
        "Service": "services",
        "Endpoints": "endpoints",
        "EndpointSlice": "endpoint_slices",
        "Pod": "pods",
        "Secret": "secrets",
    }

    def of_kind(self, kind: str) -> list[Any]:
        result: list[Any] = getattr(self, self._FIELD_BY_KIND[kind])
        return result

    def add(self, obj: KubeObject) -> None:
        self.of_kind(obj.kind).append(obj)

    def all(self) -> list[KubeObject]:
        out: list[KubeObject] = []
        for name in self._FIELD_BY_KIND.values():
            out.extend(getattr(self, name))
        return sorted(out, key=lambda o: o.order)

    def find(self, kind: str, namespace: str, name: str) -> Any | None:
        for obj in self.of_kind(kind):
            if obj.namespace == namespace and obj.name == name:
                return obj
        return None


@dataclass
class LoadResult:
    resources: ResourceSet
    errors: list[ConfigError]
    notes: list[Note]


def load(paths: Iterable[str], default_namespace: str = "default") -> LoadResult:
    """Load files and directories like ``kubectl apply -f`` does."""
    docs, errors = load_documents(paths)
    return parse_documents(docs, errors, default_namespace)


def load_text(text: str, file: str = "<input>", default_namespace: str = "default") -> LoadResult:
    docs, errors = read_documents(file, text)
    return parse_documents(docs, errors, default_namespace)


def parse_documents(
    docs: list[Document], errors: list[ConfigError], default_namespace: str = "default"
) -> LoadResult:
    result = LoadResult(ResourceSet(), list(errors), [])
    seen: dict[tuple[str, str, str], KubeObject] = {}
    order = 0
    for doc in docs:
        for item_index, value in iter_items(doc.value):
            prefix: tuple[str | int, ...] = () if item_index is None else ("items", item_index)
            obj = _parse_one(doc, prefix, value, default_namespace, order, result)
            order += 1
            if obj is None:
                continue
            key = (obj.kind, obj.namespace, obj.name)
            if key in seen:
                earlier = seen[key]
                result.notes.append(
                    Note(
                        "warning",
                        obj.ref.file,
                        obj.ref.line,
                        f"{obj.ref} is defined again (previously at {earlier.ref.location}); "
                        "the later definition is used, as kubectl apply would",
                    )
                )
                result.resources.of_kind(obj.kind).remove(earlier)
            seen[key] = obj
            result.resources.add(obj)
    return result


def _parse_one(
    doc: Document,
    prefix: tuple[str | int, ...],
    value: Any,
    default_namespace: str,
    order: int,
    result: LoadResult,
) -> KubeObject | None:
    line = doc.line_of(prefix)
    if not isinstance(value, dict):
        result.errors.append(
            ConfigError(doc.file, line, None, format_path(prefix), "expected a Kubernetes object")
        )
        return None
    kind = value.get("kind")
    meta = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    raw_name = meta.get("name") if meta else None
    name = str(raw_name) if isinstance(raw_name, str | int) else ""
    namespace = str(meta.get("namespace") or default_namespace) if meta else default_namespace
    ref = f"{kind} {namespace}/{name}" if isinstance(kind, str) else None
    if not isinstance(kind, str):
        result.errors.append(
            ConfigError(doc.file, line, None, format_path((*prefix, "kind")), "missing kind")
        )
        return None
    if kind in IGNORED_KINDS:
        result.notes.append(Note("info", doc.file, line, f"{ref}: ignored (not used by a gateway)"))
        return None
    if kind in UNSUPPORTED_ISTIO_KINDS:
        result.notes.append(
            Note("warning", doc.file, line, f"{ref}: ignored (isthmus does not implement {kind})")
        )
        return None
    if kind not in KINDS:
        hint = _did_you_mean(kind, [*KINDS, *IGNORED_KINDS])
        result.errors.append(
            ConfigError(
                doc.file,
                doc.line_of((*prefix, "kind")),
                None,
                format_path((*prefix, "kind")),
                f'unknown kind "{kind}"{hint}',
            )
        )
        return None
    cls, versions = KINDS[kind]
    api_version = value.get("apiVersion")
    if api_version not in versions:
        listed = ", ".join(sorted(versions))
        result.errors.append(
            ConfigError(
                doc.file,
                doc.line_of((*prefix, "apiVersion")),
                ref,
                format_path((*prefix, "apiVersion")),
                f"expected one of {listed}; got {_show(api_version)}"
                if api_version is not None
                else f"missing required field (one of {listed})",
            )
        )
        return None
    if not name:
        result.errors.append(
            ConfigError(
                doc.file,
                line,
                ref,
                format_path((*prefix, "metadata", "name")),
                "missing required field",
            )
        )
        return None
    try:
        obj = cls.model_validate(value)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            path = (*prefix, *loc)
            message = _message(cls, err)
            result.errors.append(
                ConfigError(doc.file, doc.line_of(path), ref, format_path(path), message)
            )
        return None
    lines = {
        format_path(path[len(prefix) :]): n
        for path, n in doc.lines.items()
        if path[: len(prefix)] == prefix
    }
    obj.bind_source(namespace, doc.file, line, order, lines)
    return obj


def _message(cls: type[BaseModel], err: Any) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    value = err.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(cls, loc[:-1])
        hint = _did_you_mean(str(loc[-1]), _aliases(parent)) if parent else ""
        return f'unknown field "{loc[-1]}"{hint}'
    if kind == "missing":
        return "missing required field"
    if kind == "isthmus":
        return str(err["msg"])
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_show(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_show(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {_show(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {_show(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {_show(value)}"
    ctx = err.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"expected a value ≥ {ctx.get('ge')}, got {_show(value)}"
    if kind == "less_than_equal":
        return f"expected a value ≤ {ctx.get('le')}, got {_show(value)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_show(value)}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return str(err["msg"])


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _aliases(cls: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in cls.model_fields.items()]


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` so the container or model underneath shows."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp


def _model_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the object at ``loc`` inside ``cls``."""
    tp: Any = cls
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            found = None
            for name, f in tp.model_fields.items():
                if part in (name, f.alias):
                    found = f.annotation
                    break
            if found is None:
                return None
            tp = found
        elif origin in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
