"""What ``isthmus apply``/``delete`` write to etcd: one key per resource, one transaction.

A plan compares each resource with what the store holds (created, configured, unchanged,
deleted, not found); committing it writes every put and delete in one transaction that
succeeds only if none of the keys it read changed meanwhile (and nothing else under the
prefix was written), so gateways see all of a change or none of it, and a concurrent writer
makes us read and check again instead of overwriting blindly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from isthmus.model.errors import ConfigError
from isthmus.model.resources import KINDS
from isthmus.model.yamlload import Document, iter_items, read_documents
from isthmus.sources.base import SourceState
from isthmus.sources.etcd import EtcdTarget
from isthmus.sources.etcd_client import EtcdClient, Listing, Op

Outcome = Literal["created", "configured", "unchanged", "deleted", "not found"]


@dataclass(frozen=True, slots=True)
class Resource:
    """One served resource from the files: where it goes, what is stored there."""

    kind: str
    api_version: str
    namespace: str
    name: str
    value: dict[str, Any]

    @property
    def display(self) -> str:
        """``kubectl``'s name for it: ``gateway.networking.istio.io/gw``, ``service/app``."""
        group = self.api_version.rpartition("/")[0] if "/" in self.api_version else ""
        kind = self.kind.lower()
        return f"{kind}.{group}/{self.name}" if group else f"{kind}/{self.name}"

    def text(self) -> bytes:
        """The stored document: YAML (so a gateway's error names a useful line), with the
        namespace the key says."""
        value = dict(self.value)
        metadata = dict(value.get("metadata") or {})
        metadata["namespace"] = self.namespace
        value["metadata"] = metadata
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).encode()


@dataclass(frozen=True, slots=True)
class Change:
    resource: Resource
    key: str
    outcome: Outcome
    op: Op | None  # None: nothing to write


def served_resources(
    docs: Iterable[Document], default_namespace: str = "default"
) -> list[Resource]:
    """The resources a gateway would load from ``docs`` (call after they validated), the
    last definition of a name winning as with ``kubectl apply``."""
    found: dict[tuple[str, str, str], Resource] = {}
    for doc in docs:
        for _, value in iter_items(doc.value):
            if not isinstance(value, dict) or value.get("kind") not in KINDS:
                continue
            meta = value.get("metadata") or {}
            namespace = str(meta.get("namespace") or default_namespace)
            resource = Resource(
                value["kind"], str(value["apiVersion"]), namespace, str(meta["name"]), value
            )
            key = (resource.kind, namespace, resource.name)
            found.pop(key, None)
            found[key] = resource
    return list(found.values())


def plan_apply(target: EtcdTarget, resources: list[Resource], stored: Listing) -> list[Change]:
    held = {kv.key: kv for kv in stored.kvs}
    changes = []
    for resource in resources:
        key = target.key(resource.kind, resource.namespace, resource.name)
        text = resource.text()
        old = held.get(key)
        if old is None:
            changes.append(Change(resource, key, "created", Op(key, text, 0)))
        elif old.value == text:
            changes.append(Change(resource, key, "unchanged", None))
        else:
            changes.append(Change(resource, key, "configured", Op(key, text, old.mod_revision)))
    return changes


def plan_delete(target: EtcdTarget, resources: list[Resource], stored: Listing) -> list[Change]:
    held = {kv.key: kv for kv in stored.kvs}
    changes = []
    for resource in resources:
        key = target.key(resource.kind, resource.namespace, resource.name)
        old = held.get(key)
        if old is None:
            changes.append(Change(resource, key, "not found", None))
        else:
            changes.append(Change(resource, key, "deleted", Op(key, None, old.mod_revision)))
    return changes


def after(stored: Listing, changes: list[Change]) -> SourceState:
    """What the store will hold once ``changes`` are written, read as a gateway reads it:
    the keys left alone, then each written resource (in creation order)."""
    touched = {c.key for c in changes if c.op is not None}
    written = {c.key: c.op.value for c in changes if c.op is not None and c.op.value is not None}
    kept = [kv for kv in stored.kvs if kv.key not in touched]
    kept.sort(key=lambda kv: (kv.create_revision, kv.key))
    docs: list[Document] = []
    errors: list[ConfigError] = []
    texts = [(kv.key, kv.value) for kv in kept] + list(written.items())
    for key, value in texts:
        found, errs = read_documents(f"etcd:{key}", value.decode("utf-8", "replace"))
        docs.extend(found)
        errors.extend(errs)
    return SourceState(tuple(docs), tuple(errors))


async def commit(
    client: EtcdClient, target: EtcdTarget, stored: Listing, changes: list[Change]
) -> bool:
    """Write every change in one transaction; False when the store moved since ``stored``."""
    ops = [c.op for c in changes if c.op is not None]
    if not ops:
        return True
    return await client.txn(ops, unchanged_since=(target.key_prefix, stored.revision))
