"""Config from the Kubernetes API server: every kind the gateway reads, listed and watched.

One ``Reflector`` per kind and namespace scope keeps a cache; ``current()`` is all caches at
once, one ``Document`` per object, once every kind has been listed (until then it raises
``SourceUnavailable``).  Kubernetes has no revision across kinds, so the snapshot is named
by a hash of its content.  Each object's ``file`` is its API path: errors read
``kubernetes:/apis/networking.istio.io/v1/namespaces/ns/virtualservices/name: VirtualService
ns/name: spec...``.

Secrets are read in the gateway's namespace only (``credentialName`` resolves there), and
their data is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from isthmus.model.yamlload import Document
from isthmus.sources.base import Changed, SourceState, SourceUnavailable
from isthmus.sources.kube_api import (
    Collection,
    JsonObject,
    KubeApi,
    KubeConfigError,
    load_configuration,
)
from isthmus.sources.reflector import Kind, NotServed, Reflector, object_key

__all__ = ["KINDS", "KubeConfigError", "KubernetesSource"]

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")  # newest first: the first one served is used
# Helm releases and service-account tokens are never TLS credentials: not read at all.
SECRET_FIELD_SELECTOR = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"


KINDS = (
    Kind("Gateway", ISTIO_GROUP, ISTIO_VERSIONS, "gateways"),
    Kind("VirtualService", ISTIO_GROUP, ISTIO_VERSIONS, "virtualservices"),
    Kind("DestinationRule", ISTIO_GROUP, ISTIO_VERSIONS, "destinationrules"),
    Kind("ServiceEntry", ISTIO_GROUP, ISTIO_VERSIONS, "serviceentries"),
    Kind("WorkloadEntry", ISTIO_GROUP, ISTIO_VERSIONS, "workloadentries"),
    Kind("Service", "", ("v1",), "services"),
    Kind(
        "EndpointSlice",
        "discovery.k8s.io",
        ("v1",),
        "endpointslices",
        fallback=Kind("Endpoints", "", ("v1",), "endpoints"),
    ),
    Kind("Pod", "", ("v1",), "pods"),
    Kind(
        "Secret",
        "",
        ("v1",),
        "secrets",
        gateway_namespace_only=True,
        field_selector=SECRET_FIELD_SELECTOR,
    ),
)


class KubernetesSource:
    """The gateway's config read from the Kubernetes API (``--source kubernetes``)."""

    def __init__(
        self,
        configuration: Any,
        gateway_namespace: str,
        watch_namespaces: Sequence[str] = (),
        sync_timeout: float = 15.0,
    ) -> None:
        self.configuration = configuration
        self.gateway_namespace = gateway_namespace
        # The gateway's own namespace holds its Service and Secrets: always watched.
        self.namespaces: list[str | None] = [None]
        if watch_namespaces:
            self.namespaces = [*sorted({*watch_namespaces, gateway_namespace})]
        self.sync_timeout = sync_timeout
        self._api: KubeApi | None = None
        self._reflectors: list[Reflector] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._versions: dict[str, list[str]] | None = None
        self._versions_lock = asyncio.Lock()
        self._changed: Changed | None = None
        self._generation = 0
        self._served_generation = -1

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None,
        gateway_namespace: str,
        watch_namespaces: Sequence[str] = (),
    ) -> KubernetesSource:
        """Load the client configuration now (before serving), so a bad kubeconfig fails
        fast; raises ``KubeConfigError``."""
        configuration = asyncio.run(load_configuration(kubeconfig))
        return cls(configuration, gateway_namespace, watch_namespaces)

    def describe(self) -> str:
        return f"kubernetes {self.configuration.host}"

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self.configuration)
        return self._api

    def _start(self) -> None:
        if self._reflectors:
            return
        for kind in KINDS:
            scopes = [self.gateway_namespace] if kind.gateway_namespace_only else self.namespaces
            for namespace in scopes:
                self._reflectors.append(
                    Reflector(self.api, kind, namespace, self.collection, self._on_change)
                )
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(r.run()) for r in self._reflectors]

    def _on_change(self, reason: str) -> None:
        self._generation += 1
        if self._changed is not None:
            self._changed(f"kubernetes: {reason}")

    async def collection(
        self, kind: Kind, namespace: str | None, rediscover: bool = False
    ) -> Collection:
        """Where to list ``kind``: its newest served version, or its fallback kind."""
        if not kind.group:
            return Collection(kind.kind, "", kind.versions[0], kind.plural, namespace)
        async with self._versions_lock:
            if self._versions is None or rediscover:
                self._versions = await self.api.served_versions()
            served = self._versions.get(kind.group, [])
        for version in kind.versions:
            if version in served:
                return Collection(kind.kind, kind.group, version, kind.plural, namespace)
        if kind.fallback is not None:
            return await self.collection(kind.fallback, namespace)
        self._versions = None  # look again next time: the CRDs may be installed later
        wanted = ", ".join(f"{kind.group}/{v}" for v in kind.versions)
        raise NotServed(f"the API server serves none of {wanted}")

    async def current(self) -> SourceState:
        self._start()
        waiting = [r for r in self._reflectors if not r.synced.is_set()]
        if waiting:
            waits = [asyncio.ensure_future(r.synced.wait()) for r in waiting]
            await asyncio.wait(waits, timeout=self.sync_timeout)
            for wait in waits:
                wait.cancel()
            waiting = [r for r in waiting if not r.synced.is_set()]
        if waiting:
            problems = [r.problem for r in waiting if r.problem]
            why = f": {problems[0]}" if problems else ""
            names = ", ".join(map(str, waiting))
            raise SourceUnavailable(f"no complete list yet of {names}{why}")
        self._served_generation = self._generation
        return SourceState(self.documents())

    def documents(self) -> tuple[Document, ...]:
        """Every cached object; within a kind oldest first, as Istio orders competing
        configs (creationTimestamp, then namespace and name)."""
        by_kind: dict[str, list[tuple[Collection, JsonObject]]] = {}
        for reflector in self._reflectors:
            if reflector.collection is None:
                continue
            for obj in reflector.cache.values():
                by_kind.setdefault(reflector.collection.kind, []).append(
                    (reflector.collection, obj)
                )
        docs: list[Document] = []
        for kind in by_kind:
            ordered = sorted(by_kind[kind], key=lambda c: (_created(c[1]), object_key(c[1])))
            for collection, obj in ordered:
                namespace, name = object_key(obj)
                where = f"kubernetes:{collection.object_path(namespace, name)}"
                docs.append(Document(where, len(docs), 0, obj))
        return tuple(docs)

    async def watch(self, changed: Changed, stop: asyncio.Event) -> None:
        self._start()
        self._changed = changed
        if self._generation != self._served_generation:
            changed("kubernetes: changed since the last read")
        try:
            await stop.wait()
        finally:
            self._changed = None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._api is not None:
            await self._api.close()
            self._api = None


def _created(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")
