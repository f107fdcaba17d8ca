"""One kind's cache, kept by list and watch the way client-go's reflector keeps it.

List (paged), then watch from the list's resourceVersion with bookmarks; apply
ADDED/MODIFIED/DELETED; answer a 410 Gone with a fresh list that replaces the cache
wholesale; after a refused or dropped connection watch again from the last version seen,
with capped exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from isthmus.sources.kube_api import (
    ApiError,
    ApiUnavailable,
    Collection,
    Gone,
    JsonObject,
    KubeApi,
)

log = logging.getLogger("isthmus.kubernetes")

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


Resolve = Callable[[Kind, str | None, bool], Awaitable[Collection]]
"""Where to list a kind in a namespace now (its served version, or its fallback), asking the
server again when told (after a 404); may raise NotServed."""


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
    if collection.kind == "Pod":
        return _pod_as_read(out)
    return out


def _pod_as_read(pod: JsonObject) -> JsonObject:
    """Only what the gateway reads of a Pod: labels, IPs, phase and named container ports.
    Pods change all the time (probes, restarts, conditions); none of that may rebuild the
    config."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    status = pod.get("status")
    status = status if isinstance(status, dict) else {}
    containers = [
        {"ports": [p for p in c.get("ports") or [] if isinstance(p, dict)]}
        for c in spec.get("containers") or []
        if isinstance(c, dict) and c.get("ports")
    ]
    kept = {k: status[k] for k in ("podIP", "podIPs", "phase") if k in status}
    out: JsonObject = {k: pod[k] for k in ("apiVersion", "kind", "metadata") if k in pod}
    if containers:
        out["spec"] = {"containers": containers}
    if kept:
        out["status"] = kept
    return out


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def object_key(obj: JsonObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _resource_version(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Reflector:
    """One kind in one namespace (or all of them), kept by list and watch."""

    def __init__(
        self,
        api: KubeApi,
        kind: Kind,
        namespace: str | None,
        resolve: Resolve,
        on_change: Callable[[str], None],
    ) -> None:
        self.api = api
        self.resolve = resolve
        self.kind = kind
        self.namespace = namespace
        self.on_change = on_change
        self.cache: dict[tuple[str, str], JsonObject] = {}
        self.collection: Collection | None = None
        self.resource_version: str | None = None  # None: list (again) before watching
        self.synced = asyncio.Event()
        self.problem = ""
        self.rediscover = False

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
                    self.resource_version = None  # list again, where discovery says now
                    self.rediscover = True
                delay = backoff.next()
                self._trouble(str(exc), delay)
            await asyncio.sleep(delay)

    async def watch(self, backoff: Backoff) -> bool:
        """Apply events until the server ends the watch; True if any came."""
        assert self.collection is not None and self.resource_version is not None
        events = self.api.watch(
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
        self.collection = await self.resolve(self.kind, self.namespace, self.rediscover)
        self.rediscover = False
        items, version = await self.api.list(self.collection, self.kind.field_selector)
        collection = self.collection
        self.replace({object_key(item): clean(item, collection) for item in items})
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
        key = object_key(obj)
        if event == "DELETED":
            if self.cache.pop(key, None) is None:
                return
        else:
            cleaned = clean(obj, self.collection)
            if self.cache.get(key) == cleaned:
                return
            self.cache[key] = cleaned
        self.on_change(f"{self.collection.kind} {key[0]}/{key[1]} {event.lower()}")
