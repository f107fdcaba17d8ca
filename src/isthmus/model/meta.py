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
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)

    def bind_source(
        self, namespace: str, file: str, line: int, order: int, lines: dict[str, int] | None = None
    ) -> None:
        """Record where this object came from; called once by the loader.

        ``lines`` maps field paths (``spec.tcp[0].route``) to their line in ``file``.
        """
        self._ref = ResourceRef(self.kind, namespace, self.metadata.name, file, line)
        self._order = order
        self._lines = lines or {}

    def line_of(self, field_path: str) -> int:
        """The line of ``field_path`` or of its nearest enclosing field that has one."""
        path = field_path
        while path:
            found = self._lines.get(path)
            if found is not None:
                return found
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.ref.line

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
