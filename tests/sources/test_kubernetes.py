"""The kubernetes source against ``FakeApiServer``, which stands in for the Kubernetes API
server (none can run here): list, watch, bookmarks, 410 relists, reconnects, namespaces."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from isthmus.control.build import build_state
from isthmus.sources import kube_api
from isthmus.sources.base import SourceUnavailable
from isthmus.sources.kube_api import KubeConfigError, load_configuration
from isthmus.sources.kubernetes import SECRET_FIELD_SELECTOR, KubernetesSource
from isthmus.translate.identity import GatewayIdentity
from tests.e2e.harness import closed_port
from tests.sources.fake_apiserver import FakeApiServer, write_kubeconfig

GATEWAY_NS = "istio-system"
WAIT = 10.0


def meta(name: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, **extra}


def gateway(name: str = "gw", namespace: str = "default", version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "Gateway",
        "metadata": meta(
            name,
            namespace,
            generation=1,
            annotations={"kubectl.kubernetes.io/last-applied-configuration": '{"big": 1}'},
        ),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }


def virtual_service(
    name: str = "app", namespace: str = "default", port: Any = 80
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta(name, namespace),
        "spec": {
            "hosts": ["*"],
            "gateways": ["gw"],
            "http": [{"route": [{"destination": {"host": "app", "port": {"number": port}}}]}],
        },
    }


def service(name: str = "app", namespace: str = "default") -> dict[str, Any]:
    """A Service as the API server returns it: defaults filled in, status, IP families."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, namespace, labels={"app": name}),
        "spec": {
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": name},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }


def endpoint_slice(name: str = "app-abc", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(
            name,
            namespace,
            labels={"kubernetes.io/service-name": "app"},
            ownerReferences=[{"apiVersion": "v1", "kind": "Service", "name": "app", "uid": "u"}],
        ),
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "name": "app-1", "namespace": namespace, "uid": "p"},
            }
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def empty_slice(name: str = "idle-xyz", namespace: str = "default") -> dict[str, Any]:
    """The API server writes a Service without endpoints as ``endpoints: null``."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta(name, namespace, labels={"kubernetes.io/service-name": "idle"}),
        "addressType": "IPv4",
        "endpoints": None,
        "ports": None,
    }


def endpoints(name: str = "app", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta(name, namespace),
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": 8080}]}
        ],
    }


def pod(name: str = "app-1", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(name, namespace, labels={"app": "app"}),
        "spec": {"containers": [{"name": "app", "image": "app:1"}], "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "hostIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def secret(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(name, namespace),
        "type": "Opaque",
        "data": {"key": base64.b64encode(b"not a real key").decode()},
    }


def everything() -> list[dict[str, Any]]:
    return [
        gateway(),
        virtual_service(),
        service(),
        endpoint_slice(),
        empty_slice(),
        pod(),
        secret("gw-cert", GATEWAY_NS),
        secret("elsewhere", "default"),
    ]


Test = Callable[[FakeApiServer, KubernetesSource], Coroutine[Any, Any, None]]


def run(
    tmp_path: Path,
    test: Test,
    objects: list[dict[str, Any]] | None = None,
    groups: dict[str, list[str]] | None = None,
    watch_namespaces: tuple[str, ...] = (),
) -> None:
    async def main() -> None:
        server = FakeApiServer(groups)
        port = await server.start()
        for obj in everything() if objects is None else objects:
            server.apply(obj)
        kubeconfig = write_kubeconfig(
            tmp_path / "kubeconfig", f"http://127.0.0.1:{port}", server.token
        )
        configuration = await load_configuration(str(kubeconfig))
        source = KubernetesSource(configuration, GATEWAY_NS, watch_namespaces)
        try:
            await test(server, source)
        finally:
            await source.close()
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 60))


class Watching:
    """The source's ``watch`` running, with the reasons it gave for each change."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = asyncio.Event()

    def changed(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()

    async def next(self, needle: str) -> None:
        """Wait until a change whose reason holds ``needle`` has been seen."""
        async with asyncio.timeout(WAIT):
            while not any(needle in r for r in self.reasons):
                self.event.clear()
                await self.event.wait()


@contextlib.asynccontextmanager
async def watching(source: KubernetesSource) -> AsyncIterator[Watching]:
    w = Watching()
    stop = asyncio.Event()
    task = asyncio.ensure_future(source.watch(w.changed, stop))
    try:
        yield w
    finally:
        stop.set()
        await task


def names(docs: Any, kind: str | None = None) -> list[str]:
    return [
        f"{d.value['kind']} {d.value['metadata']['namespace']}/{d.value['metadata']['name']}"
        for d in docs
        if kind is None or d.value["kind"] == kind
    ]


async def eventually(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.05)


def test_first_list_is_the_whole_config_as_the_model_reads_it(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        state = await source.current()
        assert state.revision is None  # no revision across kinds: the content names it
        assert sorted(names(state.documents)) == [
            "EndpointSlice default/app-abc",
            "EndpointSlice default/idle-xyz",
            "Gateway default/gw",
            "Pod default/app-1",
            f"Secret {GATEWAY_NS}/gw-cert",
            "Service default/app",
            "VirtualService default/app",
        ]
        by_name = {n: d for n, d in zip(names(state.documents), state.documents, strict=True)}
        gw = by_name["Gateway default/gw"]
        assert gw.file == "kubernetes:/apis/networking.istio.io/v1/namespaces/default/gateways/gw"
        assert gw.value["apiVersion"] == "networking.istio.io/v1"  # list items lack it
        assert "managedFields" not in gw.value["metadata"]
        assert "resourceVersion" not in gw.value["metadata"]
        assert "annotations" not in gw.value["metadata"]  # last-applied-configuration only
        assert gw.value["metadata"]["uid"]  # the API's other metadata is kept
        # What the API server returns loads: status, defaults, uid, `endpoints: null` ...
        built = build_state(state, GatewayIdentity(GATEWAY_NS, {"istio": "ingressgateway"}))
        assert built.errors == [] and built.snapshot is not None, built.problems()
        # Secrets: the gateway's namespace only, without Helm releases and SA tokens.
        secrets = [r for r in server.requests if "/secrets" in r]
        assert secrets and all(
            r.startswith(f"/api/v1/namespaces/{GATEWAY_NS}/secrets?") for r in secrets
        )
        for request in secrets:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(request).query)
            assert query["fieldSelector"] == [SECRET_FIELD_SELECTOR]

    run(tmp_path, test)


def test_watch_events_update_the_config(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        await source.current()
        async with watching(source) as w:
            server.apply(virtual_service("second"))
            await w.next("VirtualService default/second added")
            server.apply(virtual_service("second", port=81))
            await w.next("VirtualService default/second modified")
            server.apply(virtual_service("second", port=81))  # a write that changes nothing
            server.delete("VirtualService", "default", "app")
            await w.next("VirtualService default/app deleted")
            assert not any("second modified" in r for r in w.reasons[2:]), w.reasons
        state = await source.current()
        assert names(state.documents, "VirtualService") == ["VirtualService default/second"]
        (vs,) = [d for d in state.documents if d.value["kind"] == "VirtualService"]
        assert vs.value["spec"]["http"][0]["route"][0]["destination"]["port"]["number"] == 81

    run(tmp_path, test)


def test_pod_churn_the_gateway_does_not_read_changes_nothing(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        await source.current()
        async with watching(source) as w:
            churned = pod()
            churned["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            churned["status"]["hostIP"] = "10.0.0.2"
            server.apply(churned)  # a probe and a move: nothing the gateway reads
            moved = pod()
            moved["status"]["podIP"] = "127.0.0.2"
            server.apply(moved)
            await w.next("Pod default/app-1 modified")
            assert len([r for r in w.reasons if "Pod default/app-1" in r]) == 1, w.reasons
        (read,) = [d.value for d in (await source.current()).documents if d.value["kind"] == "Pod"]
        assert read["status"] == {
            "phase": "Running",
            "podIP": "127.0.0.2",
            "podIPs": [{"ip": "127.0.0.1"}],
        }
        assert "spec" not in read  # no named container ports to keep

    run(tmp_path, test)


def test_bookmark_moves_the_version_and_410_lists_again(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        await source.current()
        (vs_watch,) = [r for r in source._reflectors if r.kind.kind == "VirtualService"]
        async with watching(source) as w:
            server.apply(service("other"))  # moves the server's version, not the VS watch's
            await w.next("Service default/other added")
            assert vs_watch.resource_version != str(server.version)
            await eventually(lambda: server.watching("virtualservices"))
            server.bookmark()
            await eventually(lambda: vs_watch.resource_version == str(server.version))
            # A change the watch never sees, then history compacted: only a list finds it.
            server.delete("VirtualService", "default", "app", notify=False)
            lists = sum(
                r.startswith("/apis/networking.istio.io/v1/virtualservices?limit")
                for r in server.requests
            )
            server.compact()
            await w.next("VirtualService in all namespaces listed")
        relists = [
            r
            for r in server.requests
            if r.startswith("/apis/networking.istio.io/v1/virtualservices?limit")
        ]
        assert len(relists) == lists + 1
        assert names((await source.current()).documents, "VirtualService") == []

    run(tmp_path, test)


def test_dropped_watch_resumes_from_the_last_version(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        await source.current()
        async with watching(source) as w:
            server.apply(virtual_service("before"))
            await w.next("VirtualService default/before added")
            seen = str(server.version)
            server.drop_watches()
            server.apply(virtual_service("during"))
            await w.next("VirtualService default/during added")
        resumed = [r for r in server.requests if "virtualservices?watch=true" in r]
        assert f"resourceVersion={seen}" in resumed[-1]
        lists = [r for r in server.requests if "virtualservices?limit" in r]
        assert len(lists) == 1  # resumed, not listed again
        assert sorted(names((await source.current()).documents, "VirtualService")) == [
            "VirtualService default/app",
            "VirtualService default/before",
            "VirtualService default/during",
        ]

    run(tmp_path, test)


def test_watch_namespace_limits_what_is_asked(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        docs = (await source.current()).documents
        assert sorted(names(docs)) == [
            "Gateway apps/gw",
            f"Secret {GATEWAY_NS}/gw-cert",
            f"Service {GATEWAY_NS}/ingress",
        ]
        asked = [r for r in server.requests if r != "/apis"]
        assert asked
        for request in asked:
            assert "/namespaces/" in request, request
            assert request.split("/namespaces/")[1].split("/")[0] in ("apps", GATEWAY_NS)

    objects = [
        gateway(namespace="apps"),
        gateway(),
        service("ingress", GATEWAY_NS),
        secret("gw-cert", GATEWAY_NS),
    ]
    run(tmp_path, test, objects, watch_namespaces=("apps",))


def test_oldest_istio_version_and_endpoints_when_nothing_newer_is_served(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        state = await source.current()
        (gw,) = [d for d in state.documents if d.value["kind"] == "Gateway"]
        assert gw.value["apiVersion"] == "networking.istio.io/v1alpha3"
        assert names(state.documents, "Endpoints") == ["Endpoints default/app"]
        assert not [r for r in server.requests if "endpointslices" in r or "/v1/gateways" in r]
        built = build_state(state, GatewayIdentity(GATEWAY_NS, {"istio": "ingressgateway"}))
        assert built.snapshot is not None, built.problems()

    objects = [gateway(version="v1alpha3"), service(), endpoints()]
    run(tmp_path, test, objects, groups={"networking.istio.io": ["v1alpha3"]})


def test_without_istio_crds_istio_kinds_are_empty(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        state = await source.current()
        assert names(state.documents) == ["Service default/app"]
        assert not [r for r in server.requests if "networking.istio.io" in r]

    run(tmp_path, test, [service()], groups={"discovery.k8s.io": ["v1"]})


def test_unavailable_until_every_kind_is_listed(tmp_path: Path) -> None:
    async def main() -> None:
        kubeconfig = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{closed_port()}", "t")
        source = KubernetesSource(await load_configuration(str(kubeconfig)), GATEWAY_NS, (), 2.0)
        try:
            with pytest.raises(SourceUnavailable, match="no complete list yet of Gateway in all"):
                await source.current()
        finally:
            await source.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_wrong_token_is_reported(tmp_path: Path) -> None:
    async def main() -> None:
        server = FakeApiServer(token="right")
        port = await server.start()
        kubeconfig = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}", "wrong")
        source = KubernetesSource(await load_configuration(str(kubeconfig)), GATEWAY_NS, (), 2.0)
        try:
            with pytest.raises(SourceUnavailable, match="401"):
                await source.current()
        finally:
            await source.close()
            await server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_missing_kubeconfig_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=r"nowhere\.yaml"):
        asyncio.run(load_configuration(str(tmp_path / "nowhere.yaml")))


def test_lists_come_in_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube_api, "LIST_PAGE", 2)

    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        state = await source.current()
        assert len(names(state.documents, "Service")) == 5
        pages = [r for r in server.requests if r.startswith("/api/v1/services?")]
        assert len(pages) == 3 and "continue=" in pages[1] and "continue=" in pages[2]

    run(tmp_path, test, [service(f"s{i}") for i in range(5)])


def test_a_version_no_longer_served_is_found_again_by_discovery(tmp_path: Path) -> None:
    async def test(server: FakeApiServer, source: KubernetesSource) -> None:
        await source.current()
        async with watching(source) as w:
            await eventually(lambda: server.watching("gateways"))
            server.groups = {"networking.istio.io": ["v1beta1"], "discovery.k8s.io": ["v1"]}
            server.drop_watches()  # the re-watch at v1 gets 404: discover, list at v1beta1
            await w.next("Gateway in all namespaces listed")
        (gw,) = [d for d in (await source.current()).documents if d.value["kind"] == "Gateway"]
        assert gw.value["apiVersion"] == "networking.istio.io/v1beta1"
        assert any(
            r.startswith("/apis/networking.istio.io/v1beta1/gateways?") for r in server.requests
        )

    run(tmp_path, test, [gateway()])
