"""Kubernetes object metadata and the reference every diagnostic points at."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr

from isthmus.model.base import LenientModel, Model, Str
from isthmus.refs import ResourceRef


class ObjectMeta(Model):
    """``metadata`` as ``kubectl get -o yaml`` prints it; isthmus reads name, namespace, labels."""

    name: Str = ""
    generate_name: Str | None = None
    namespace: Str | None = None
    labels: dict[str, Str] = Field(default_factory=dict)
    annotations: dict[str, Str] = Field(default_factory=dict)
    uid: Str | None = None
    resource_version: Str | None = None
    generation: int | None = None
    creation_timestamp: Str | None = None
    deletion_timestamp: Str | None = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[dict[str, Any]] = Field(default_factory=list)
    finalizers: list[Str] = Field(default_factory=list)
    managed_fields: list[dict[str, Any]] = Field(default_factory=list)
    self_link: Str | None = None


class LabelSelector(Model):
    match_labels: dict[str, Str] = Field(default_factory=dict)
    match_expressions: list[LenientModel] = Field(default_factory=list)


class KubeObject(Model):
    """Fields every top-level object has; ``ref`` and ``order`` are set by the loader."""

    api_version: Str
    kind: Str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    status: Any = None

    _ref: ResourceRef | None = PrivateAttr(default=None)
    _order: int = PrivateAttr(default=0)

    def bind_source(self, namespace: str, file: str, line: int, order: int) -> None:
        """Record where this object came from; called once by the loader."""
        self._ref = ResourceRef(self.kind, namespace, self.metadata.name, file, line)
        self._order = order

    @property
    def ref(self) -> ResourceRef:
        if self._ref is None:
            return ResourceRef(self.kind, self.metadata.namespace or "default", self.metadata.name)
        return self._ref

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.ref.namespace

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    @property
    def order(self) -> int:
        """Istio orders competing configs by creation time; files use their load order."""
        return self._order
