"""The few Kubernetes API calls the kubernetes source makes, over kubernetes_asyncio.

kubernetes_asyncio loads the kubeconfig or the in-cluster service account (token, CA, client
certificates, token refresh) and carries the requests.  Every object is asked for as plain
JSON through the client's generic ``call_api``: the typed models would drop the Istio
resources' fields and cost a deserialization per object, and one path per collection covers
core, ``discovery.k8s.io`` and ``networking.istio.io`` alike.  Failures leave this module as
``ApiError`` (the server answered with an error status) or ``ApiUnavailable`` (no answer).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from isthmus import __version__

JsonObject = dict[str, Any]
LIST_PAGE = 500


class KubeConfigError(Exception):
    """The kubeconfig or the in-cluster service account cannot be used."""


class ApiError(Exception):
    """The API server answered a request with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}".strip())
        self.status = status


class Gone(ApiError):
    """410: the resourceVersion (or continue token) is too old; list again."""


class ApiUnavailable(Exception):
    """No usable answer: connection refused or dropped, timeout, a garbled stream."""


@dataclass(frozen=True)
class Collection:
    """A list/watch endpoint: one kind at one API version, in a namespace or in all."""

    kind: str
    group: str
    version: str
    plural: str
    namespace: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{base}{scope}/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}/{name}"

    def __str__(self) -> str:
        return f"{self.kind} in {self.namespace or 'all namespaces'}"


async def load_configuration(kubeconfig: str | None) -> k8s.Configuration:
    """``--kubeconfig``, else ``$KUBECONFIG``, else the pod's service account, else
    ``~/.kube/config`` (the order controller-runtime uses)."""
    configuration = k8s.Configuration()
    try:
        if kubeconfig is None and "KUBECONFIG" not in os.environ:
            if "KUBERNETES_SERVICE_HOST" in os.environ:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                return configuration
            kubeconfig = os.path.expanduser("~/.kube/config")
        path = kubeconfig or os.environ["KUBECONFIG"]
        await k8s_config.load_kube_config(
            config_file=path, client_configuration=configuration, persist_config=False
        )
    except (k8s_config.ConfigException, OSError, ValueError, KeyError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "in-cluster service account"
        raise KubeConfigError(f"kubernetes: cannot use {where}: {exc}") from None
    return configuration


def _status_error(status: int, body: bytes | str | None) -> ApiError:
    """An error from an HTTP status and a ``Status`` object body, when there is one."""
    message = ""
    try:
        found = json.loads(body or b"{}")
        if isinstance(found, dict):
            status = int(found.get("code") or status)
            message = str(found.get("message") or found.get("reason") or "")
    except (ValueError, TypeError):
        pass
    return (Gone if status == 410 else ApiError)(status, message)


class KubeApi:
    """List and watch collections as plain JSON; discover the served API versions."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        self.host = configuration.host or ""
        self._client = k8s.ApiClient(configuration)
        self._client.user_agent = f"isthmus/{__version__}"  # names us in the audit log

    async def close(self) -> None:
        await self._client.close()

    async def _get(self, path: str, query: list[tuple[str, str]]) -> JsonObject:
        try:
            found = await self._client.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                response_types_map={200: "object"},
                _return_http_data_only=True,
                _request_timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
            )
        except k8s.ApiException as exc:
            raise _status_error(exc.status or 0, exc.body) from None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise ApiUnavailable(_describe(exc)) from None
        if not isinstance(found, dict):
            raise ApiUnavailable(f"GET {path}: expected a JSON object")
        return found

    async def served_versions(self) -> dict[str, list[str]]:
        """Every API group the server serves and its versions (``GET /apis``)."""
        groups = (await self._get("/apis", [])).get("groups") or []
        return {
            str(g.get("name")): [str(v.get("version")) for v in g.get("versions") or []]
            for g in groups
            if isinstance(g, dict)
        }

    async def list(
        self, collection: Collection, field_selector: str | None = None
    ) -> tuple[list[JsonObject], str]:
        """Every object of the collection, page by page, and the list's resourceVersion."""
        items: list[JsonObject] = []
        token = ""
        while True:
            query = [("limit", str(LIST_PAGE))]
            if token:
                query.append(("continue", token))
            if field_selector:
                query.append(("fieldSelector", field_selector))
            page = await self._get(collection.path, query)
            items.extend(i for i in page.get("items") or [] if isinstance(i, dict))
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    async def watch(
        self,
        collection: Collection,
        resource_version: str,
        timeout_seconds: int,
        field_selector: str | None = None,
    ) -> AsyncGenerator[tuple[str, JsonObject], None]:
        """The events after ``resource_version`` as ``(type, object)``, bookmarks included,
        until the server ends the watch.  An ``ERROR`` event is raised as ``ApiError``.

        Hand-read rather than kubernetes_asyncio's ``Watch``: that one answers a 410 by
        watching again from the same version, where an informer must list again.
        """
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if field_selector:
            query.append(("fieldSelector", field_selector))
        # A watch is silent between events: the read timeout is the server's end plus slack.
        timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=timeout_seconds + 30)
        try:
            response: aiohttp.ClientResponse = await self._client.call_api(
                collection.path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise ApiUnavailable(_describe(exc)) from None
        async with response:
            if response.status != 200:
                raise _status_error(response.status, await _read_safely(response))
            while True:
                try:
                    line = await response.content.readline()
                except aiohttp.ClientPayloadError:
                    raise ApiUnavailable("watch connection lost mid-stream") from None
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    raise ApiUnavailable(_describe(exc)) from None
                if not line:
                    if response.content.exception() is not None:
                        raise ApiUnavailable("watch connection lost")
                    return
                if not line.strip():
                    continue
                yield _event(line)


def _event(line: bytes) -> tuple[str, JsonObject]:
    try:
        event = json.loads(line)
    except ValueError:
        raise ApiUnavailable("watch stream: an event is not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise ApiUnavailable("watch stream: an event has no object")
    kind, obj = str(event.get("type")), event["object"]
    if kind == "ERROR":
        raise _status_error(int(obj.get("code") or 500), json.dumps(obj))
    return kind, obj


async def _read_safely(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await asyncio.wait_for(response.read(), 10)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return b""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"
