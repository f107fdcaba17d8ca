"""Config from the Kubernetes API server: every kind listed, then watched, as informers do.

One reflector per kind and namespace scope keeps a cache: list (paged), watch from the
list's resourceVersion with bookmarks, apply ADDED/MODIFIED/DELETED, answer a 410 Gone with
a fresh list that replaces the cache wholesale, and after a refused or dropped connection
watch again from the last version seen, with capped exponential backoff and jitter.
``current()`` is all caches at once, one ``Document`` per object, once every kind has been
listed; until then it raises ``SourceUnavailable``.  Kubernetes has no revision across
kinds, so the snapshot is named by a hash of its content.

Secrets are read in the gateway's namespace only (``credentialName`` resolves there), and
their data is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from isthmus.model.yamlload import Document
from isthmus.sources.base import Changed, SourceState, SourceUnavailable
from isthmus.sources.kube_api import (
    ApiError,
    ApiUnavailable,
    Collection,
    Gone,
    JsonObject,
    KubeApi,
    KubeConfigError,
    load_configuration,
)

__all__ = ["KINDS", "KubeConfigError", "KubernetesSource"]

log = logging.getLogger("isthmus.kubernetes")

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")  # newest first: the first one served is used
# Helm releases and service-account tokens are never TLS credentials: not read at all.
SECRET_FIELD_SELECTOR = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class Kind:
    """A kind the gateway reads and where the API serves it."""

    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    fallback: Kind | None = None
    gateway_namespace_only: bool = False
    field_selector: str | None = None


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


class NotServed(Exception):
    """The API server serves none of a kind's versions (Istio's CRDs not installed)."""


class Backoff:
    """Capped exponential backoff with jitter (half fixed, half random).

    Eight lines did not justify a retry library; the loop around it is the informer's own.
    """

    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2.0**self.failures)
        self.failures += 1
        return delay / 2 + random.uniform(0, delay / 2)

    def reset(self) -> None:
        self.failures = 0


def clean(obj: JsonObject, collection: Collection) -> JsonObject:
    """The object as the model reads it: apiVersion and kind filled in (list items lack
    them), nulls dropped (Go's empty lists and maps), bookkeeping and noise stripped."""
    out: JsonObject = dict(_drop_nulls(obj))
    out["apiVersion"] = collection.api_version
    out["kind"] = collection.kind
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        meta.pop("resourceVersion", None)  # changes on every write, even a no-op one
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(LAST_APPLIED, None)
            if not annotations:
                del meta["annotations"]
    return out


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _key(obj: JsonObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _resource_version(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Reflector:
    """One kind in one namespace (or all of them), kept by list and watch."""

    def __init__(
        self,
        source: KubernetesSource,
        kind: Kind,
        namespace: str | None,
        on_change: Callable[[str], None],
    ) -> None:
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.on_change = on_change
        self.cache: dict[tuple[str, str], JsonObject] = {}
        self.collection: Collection | None = None
        self.resource_version: str | None = None  # None: list (again) before watching
        self.synced = asyncio.Event()
        self.problem = ""

    def __str__(self) -> str:
        return f"{self.kind.kind} in {self.namespace or 'all namespaces'}"

    async def run(self) -> None:
        """List, then watch, for ever (the source's ``close()`` cancels it)."""
        backoff = Backoff()
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                if await self.watch(backoff):
                    continue  # the server ended a live watch: watch again at once
                delay = backoff.next()  # it ended without one event: not in a tight loop
            except Gone:
                # Backoff here too: a server answering each fresh list's version with 410
                # must not get a list per millisecond.
                delay = backoff.next()
                log.info("kubernetes: %s: resourceVersion expired, listing again", self)
                self.resource_version = None
            except NotServed as exc:
                self.replace({})
                delay = 30.0  # the CRDs may be installed later: look again now and then
                self._trouble(str(exc), delay)
            except (ApiError, ApiUnavailable) as exc:
                if isinstance(exc, ApiError) and exc.status == 404:
                    self.source.forget_versions()
                    self.resource_version = None
                delay = backoff.next()
                self._trouble(str(exc), delay)
            await asyncio.sleep(delay)

    async def watch(self, backoff: Backoff) -> bool:
        """Apply events until the server ends the watch; True if any came."""
        assert self.collection is not None and self.resource_version is not None
        events = self.source.api.watch(
            self.collection,
            self.resource_version,
            random.randint(300, 600),  # spread the re-watches, as client-go does
            self.kind.field_selector,
        )
        seen = False
        async with contextlib.aclosing(events):
            async for event, obj in events:
                self.apply(event, obj)
                if not seen:
                    backoff.reset()
                    self._recovered()
                seen = True
        return seen

    def _trouble(self, problem: str, delay: float) -> None:
        if problem != self.problem:  # once per kind of trouble, not on every retry
            log.warning("kubernetes: %s: %s; retrying in %.1fs", self, problem, delay)
        self.problem = problem

    async def relist(self) -> None:
        self.collection = await self.source.collection(self.kind, self.namespace)
        items, version = await self.source.api.list(self.collection, self.kind.field_selector)
        collection = self.collection
        self.replace({_key(item): clean(item, collection) for item in items})
        self.resource_version = version
        self._recovered()

    def _recovered(self) -> None:
        if self.problem:
            log.info("kubernetes: %s: reading again", self)
            self.problem = ""

    def replace(self, cache: dict[tuple[str, str], JsonObject]) -> None:
        changed = cache != self.cache or not self.synced.is_set()
        self.cache = cache
        self.synced.set()
        if changed:
            self.on_change(f"{self} listed")

    def apply(self, event: str, obj: JsonObject) -> None:
        version = _resource_version(obj)
        if version:
            self.resource_version = version
        if event not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only the version moves
        assert self.collection is not None
        key = _key(obj)
        if event == "DELETED":
            if self.cache.pop(key, None) is None:
                return
        else:
            cleaned = clean(obj, self.collection)
            if self.cache.get(key) == cleaned:
                return
            self.cache[key] = cleaned
        self.on_change(f"{self.collection.kind} {key[0]}/{key[1]} {event.lower()}")


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
                self._reflectors.append(Reflector(self, kind, namespace, self._on_change))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(r.run()) for r in self._reflectors]

    def _on_change(self, reason: str) -> None:
        self._generation += 1
        if self._changed is not None:
            self._changed(f"kubernetes: {reason}")

    def forget_versions(self) -> None:
        self._versions = None

    async def collection(self, kind: Kind, namespace: str | None) -> Collection:
        """Where to list ``kind``: its newest served version, or its fallback kind."""
        if not kind.group:
            return Collection(kind.kind, "", kind.versions[0], kind.plural, namespace)
        async with self._versions_lock:
            if self._versions is None:
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
            ordered = sorted(by_kind[kind], key=lambda c: (_created(c[1]), _key(c[1])))
            for collection, obj in ordered:
                namespace, name = _key(obj)
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
