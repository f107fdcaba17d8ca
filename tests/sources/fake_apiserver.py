"""A stand-in for the Kubernetes API server, for tests. It is NOT Kubernetes.

No real API server can run on the test machine, so this small asyncio HTTP/1.1 server speaks
the part of the API that ``isthmus run --source kubernetes`` uses, the way kube-apiserver
speaks it: ``GET /apis`` discovery; lists with ``metadata.resourceVersion`` (``limit`` and
``continue`` pages; items without kind/apiVersion, as typed lists send them); watches as a
chunked stream of one JSON event per line, replayed from ``resourceVersion``, with BOOKMARK
events on request; a watch from a compacted version answered by an ``ERROR`` event with a
410 ``Expired`` Status; a bearer token checked on every request.  Tests change objects,
send bookmarks, compact history and drop watch connections, and read ``requests`` (every
request line) to see what the client asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any

PLURALS = {
    "Gateway": "gateways",
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
    "ServiceEntry": "serviceentries",
    "WorkloadEntry": "workloadentries",
    "Service": "services",
    "Endpoints": "endpoints",
    "EndpointSlice": "endpointslices",
    "Pod": "pods",
    "Secret": "secrets",
}
ALL_VERSIONS = {"networking.istio.io": ["v1", "v1beta1", "v1alpha3"], "discovery.k8s.io": ["v1"]}
Event = tuple[str, tuple[str, str], dict[str, Any]]  # type, (group, plural), object


class FakeApiServer:
    def __init__(self, groups: dict[str, list[str]] | None = None, token: str = "t0ken") -> None:
        self.groups = ALL_VERSIONS if groups is None else groups
        self.token = token
        self.version = 1000
        self.oldest = 0  # watches from before this version are answered 410
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self.history: list[tuple[int, Event]] = []
        self.requests: list[str] = []
        self._watches: dict[asyncio.StreamWriter, asyncio.Queue[Event | None]] = {}
        self._watching: dict[asyncio.StreamWriter, str] = {}  # the path each one watches
        self._lock = threading.Lock()  # tests change objects from their own thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self, tls: ssl.SSLContext | None = None, port: int = 0) -> int:
        self._loop = asyncio.get_running_loop()
        self._tls = tls
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port, ssl=tls)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop_listening(self) -> int:
        """Go away as a crashed API server would; returns the port to restart() on."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        self._server.close()
        self.drop_watches()
        await self._server.wait_closed()
        return port

    async def restart(self, port: int) -> None:
        await self.start(self._tls, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_watches()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    # What tests do ------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], notify: bool = True) -> None:
        """Create or update (ADDED/MODIFIED); ``notify=False`` hides the event from watches."""
        obj = copy.deepcopy(obj)
        key = _key_of(obj)
        meta = obj["metadata"]
        with self._lock:
            self.version += 1
            old = self.objects.setdefault(key, {}).get((meta["namespace"], meta["name"]))
            created = old["metadata"] if old else {}
            meta.setdefault("uid", created.get("uid", f"uid-{self.version}"))
            stamp = f"2024-01-01T00:{self.version // 60 % 60:02}:{self.version % 60:02}Z"
            meta.setdefault("creationTimestamp", created.get("creationTimestamp", stamp))
            meta["resourceVersion"] = str(self.version)
            meta["managedFields"] = [{"manager": "kubectl", "operation": "Update"}]
            self.objects[key][(meta["namespace"], meta["name"])] = obj
            self._record(("MODIFIED" if old else "ADDED", key, obj), notify)

    def delete(self, kind: str, namespace: str, name: str, notify: bool = True) -> None:
        group = next((g for (g, p) in self.objects if p == PLURALS[kind]), "")
        with self._lock:
            self.version += 1
            obj = self.objects[(group, PLURALS[kind])].pop((namespace, name))
            obj["metadata"]["resourceVersion"] = str(self.version)
            self._record(("DELETED", (group, PLURALS[kind]), obj), notify)

    def bookmark(self) -> None:
        with self._lock:
            for queue in self._watches.values():
                self._put(queue, ("BOOKMARK", ("", ""), {"metadata": {}}))

    def compact(self) -> None:
        """Forget history: a watch from any earlier version now gets 410, and open watches
        get an ERROR 410 event, as when the API server's watch cache moves past them."""
        with self._lock:
            self.oldest = self.version
            self.history.clear()
            for queue in self._watches.values():
                self._put(queue, ("ERROR", ("", ""), _status(410, "Expired", "too old")))

    def watching(self, plural: str) -> bool:
        """Whether a watch of ``plural`` is open (a bookmark or a drop would reach it)."""
        with self._lock:
            return any(path.endswith("/" + plural) for path in self._watching.values())

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no final chunk)."""
        with self._lock:
            for writer, queue in self._watches.items():
                writer.transport.abort()
                self._put(queue, None)
            self._watches.clear()
            self._watching.clear()

    # The protocol -------------------------------------------------------------------------

    def _record(self, event: Event, notify: bool) -> None:
        self.history.append((self.version, event))
        for queue in self._watches.values() if notify else ():
            self._put(queue, event)

    def _put(self, queue: asyncio.Queue[Event | None], event: Event | None) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(queue.put_nowait, copy.deepcopy(event))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
            target = head[0].split()[1]
            self.requests.append(target)
            url = urllib.parse.urlsplit(target)
            query = dict(urllib.parse.parse_qsl(url.query))
            if f"authorization: bearer {self.token}" not in (h.lower() for h in head):
                await _send(writer, 401, _status(401, "Unauthorized", "no token"))
            elif url.path == "/apis":
                await _send(writer, 200, self._discovery())
            elif (route := self._route(url.path)) is None:
                await _send(writer, 404, _status(404, "NotFound", "not served"))
            elif query.get("watch") in ("true", "1"):
                await self._watch(writer, route, query)
            else:
                await _send(writer, 200, self._list(route, query))
        writer.close()

    def _discovery(self) -> dict[str, Any]:
        groups = [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs]}
            for g, vs in self.groups.items()
        ]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _route(self, path: str) -> tuple[str, str, str, str | None] | None:
        """(group, version, plural, namespace) of a collection this server serves."""
        parts = path.strip("/").split("/")
        group, rest = ("", parts[1:]) if parts[0] == "api" else (parts[1], parts[2:])
        version, rest = rest[0], rest[1:]
        namespace = rest[1] if len(rest) == 3 and rest[0] == "namespaces" else None
        served = version == "v1" if not group else version in self.groups.get(group, [])
        if not served or rest[-1] not in PLURALS.values():
            return None
        return group, version, rest[-1], namespace

    def _list(self, route: tuple[str, str, str, str | None], query: dict[str, str]) -> Any:
        group, version, plural, namespace = route
        with self._lock:
            items = [
                {k: v for k, v in copy.deepcopy(obj).items() if k not in ("kind", "apiVersion")}
                for (ns, _), obj in sorted(self.objects.get((group, plural), {}).items())
                if namespace in (None, ns)
            ]
            start = int(query.get("continue") or 0)
            end = start + int(query.get("limit") or len(items) or 1)
            meta = {"resourceVersion": str(self.version)}
        if end < len(items):
            meta["continue"] = str(end)
        api_version = f"{group}/{version}" if group else version
        return {
            "kind": "List",
            "apiVersion": api_version,
            "metadata": meta,
            "items": items[start:end],
        }

    async def _watch(
        self,
        writer: asyncio.StreamWriter,
        route: tuple[str, str, str, str | None],
        query: dict[str, str],
    ) -> None:
        group, version, plural, namespace = route
        since = int(query.get("resourceVersion") or 0)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        with self._lock:
            if since < self.oldest:
                queue.put_nowait(("ERROR", ("", ""), _status(410, "Expired", "too old")))
                queue.put_nowait(None)
            for version_seen, event in self.history:
                if version_seen > since:
                    queue.put_nowait(copy.deepcopy(event))
            self._watches[writer] = queue
            self._watching[writer] = f"{group}/{version}/{namespace}/{plural}"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json;stream=watch\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        try:
            while (event := await queue.get()) is not None:  # None: dropped
                kind, key, obj = event
                if kind == "BOOKMARK":
                    if query.get("allowWatchBookmarks") != "true":
                        continue
                    obj = {"kind": "Bookmark", "metadata": {"resourceVersion": str(self.version)}}
                elif kind != "ERROR":
                    if key != (group, plural) or namespace not in (
                        None,
                        obj["metadata"]["namespace"],
                    ):
                        continue
                    obj["apiVersion"] = f"{group}/{version}" if group else version
                line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                writer.write(b"%x\r\n%s\r\n" % (len(line), line))
                await writer.drain()
                if kind == "ERROR":
                    break
            else:
                return
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            with self._lock:
                self._watches.pop(writer, None)
                self._watching.pop(writer, None)


def _key_of(obj: dict[str, Any]) -> tuple[str, str]:
    api_version = obj["apiVersion"]
    return (api_version.split("/")[0] if "/" in api_version else "", PLURALS[obj["kind"]])


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


async def _send(writer: asyncio.StreamWriter, code: int, body: Any) -> None:
    data = json.dumps(body).encode()
    writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" % code)
    writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(data), data))
    await writer.drain()


def write_kubeconfig(path: Path, server: str, token: str, ca_file: Path | None = None) -> Path:
    """A kubeconfig whose current context reaches ``server`` with ``token``."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": cluster}],
        "users": [{"name": "gateway", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "gateway"}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path
