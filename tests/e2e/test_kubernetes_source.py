"""``isthmus run --source kubernetes``: a real gateway process reading its config from
``FakeApiServer`` over TLS, which stands in for the Kubernetes API server (none can run on
this machine), and relaying real TCP traffic to local backends while the config changes
through watch events, bookmarks, 410 relists and dropped watch connections."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import BackgroundLoop, background, free_port, isthmus_run, tcp_gateway
from tests.sources.fake_apiserver import FakeApiServer, write_kubeconfig
from tests.tls_certs import CertAuthority

DEADLINE = 15.0
GATEWAY_NS = "istio-system"


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x\n")
        return s.makefile("rb").readline().decode().split()[0]


def answers(port: int) -> str:
    try:
        return ask(port)
    except (OSError, IndexError):
        return ""


def wait_for(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@dataclass
class Cluster:
    """The fake API server holding a TCP gateway config, and the backends it routes to."""

    bg: BackgroundLoop
    server: FakeApiServer
    kubeconfig: Path
    port: int
    backends: list[tuple[str, int, str]]

    def config(self, weights: list[int]) -> dict[str, dict[str, Any]]:
        docs = yaml.safe_load_all(tcp_gateway(self.port, self.backends, weights))
        return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}

    def routing(self, weights: list[int], notify: bool = True) -> None:
        self.server.apply(self.config(weights)["VirtualService/app"], notify)


@contextlib.contextmanager
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ca = CertAuthority.create(tmp_path / "ca")
    leaf = ca.issue("kube-apiserver", dns=("localhost",), ips=("127.0.0.1",))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(leaf.cert_path, leaf.key_path)
    with background() as bg:
        one = _echo(bg, "one")
        two = _echo(bg, "two")
        server = FakeApiServer()
        api_port = bg.run(server.start(tls))
        kubeconfig = write_kubeconfig(
            tmp_path / "kubeconfig", f"https://127.0.0.1:{api_port}", server.token, ca.path
        )
        found = Cluster(
            bg,
            server,
            kubeconfig,
            free_port(),
            [("v1", one, "127.0.0.1"), ("v2", two, "127.0.0.1")],
        )
        for obj in found.config([100, 0]).values():
            server.apply(obj)
        for namespace in (GATEWAY_NS, "default"):
            server.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "cert", "namespace": namespace},
                    "data": {},
                }
            )
        try:
            yield found
        finally:
            bg.run(server.close())


def _echo(bg: BackgroundLoop, prefix: str) -> int:
    port: int = bg.run(start_tcp_echo(0, prefix)).sockets[0].getsockname()[1]
    return port


def source_args(c: Cluster, *extra: str) -> tuple[str, ...]:
    return ("--source", "kubernetes", "--kubeconfig", str(c.kubeconfig), *extra)


def test_serves_from_the_api_and_follows_its_changes(tmp_path: Path) -> None:
    with cluster(tmp_path) as c, isthmus_run(None, *source_args(c)) as gw:
        assert ask(c.port) == "one"
        c.routing([0, 100])  # a MODIFIED event
        assert wait_for(lambda: answers(c.port) == "two"), "".join(gw.output)
        broken = c.config([0, 100])["VirtualService/app"]
        broken["spec"]["tcp"][0]["route"][0]["destination"]["port"]["number"] = "x"
        c.server.apply(broken)
        assert wait_for(lambda: "rejected update" in "".join(gw.output)), "".join(gw.output)
        assert ask(c.port) == "two"  # the last good config keeps serving
        output = "".join(gw.output)
        assert "VirtualService default/app: spec.tcp[0].route[0].destination.port.number" in output
        c.server.delete("VirtualService", "default", "app")  # DELETED: no route is left
        assert wait_for(lambda: answers(c.port) == ""), "".join(gw.output)
    secrets = [r for r in c.server.requests if "/secrets" in r]
    assert secrets and all(
        r.startswith(f"/api/v1/namespaces/{GATEWAY_NS}/secrets?") for r in secrets
    )


def test_converges_after_dropped_watches_and_410(tmp_path: Path) -> None:
    with (
        cluster(tmp_path) as c,
        isthmus_run(None, *source_args(c, "--watch-namespace", "default")) as gw,
    ):
        assert ask(c.port) == "one"
        assert wait_for(lambda: c.server.watching("virtualservices"))
        c.server.drop_watches()
        c.routing([0, 100])  # while no watch is open: seen when the watch resumes
        assert wait_for(lambda: answers(c.port) == "two"), "".join(gw.output)
        assert wait_for(lambda: c.server.watching("virtualservices"))
        c.server.bookmark()
        c.routing([100, 0], notify=False)  # never sent as an event ...
        c.server.compact()  # ... and history gone: a 410 and a fresh list find it
        assert wait_for(lambda: answers(c.port) == "one"), "".join(gw.output)
    asked = [urllib.parse.urlsplit(r).path for r in c.server.requests if r != "/apis"]
    assert asked and all("/namespaces/" in p for p in asked), asked  # nothing cluster-wide
    assert {p.split("/namespaces/")[1].split("/")[0] for p in asked} == {"default", GATEWAY_NS}


def test_workers_share_one_watch_and_follow_it(tmp_path: Path) -> None:
    """With --workers the supervisor alone talks to the API server; workers follow it."""
    with cluster(tmp_path) as c, isthmus_run(None, *source_args(c, "--workers", "2")) as gw:
        assert wait_for(lambda: answers(c.port) == "one"), "".join(gw.output)
        c.routing([0, 100])
        assert wait_for(lambda: answers(c.port) == "two"), "".join(gw.output)
        assert all(answers(c.port) == "two" for _ in range(20))  # every worker moved
    watches = [r for r in c.server.requests if "watch=" in r and "/virtualservices" in r]
    assert len(watches) == 1, watches  # one watch for the whole process tree


def test_a_broken_first_config_waits_for_a_fix(tmp_path: Path) -> None:
    """A fleet's store may hold a broken config when a replica starts: it says why and waits
    (a process that exited would restart into the same config)."""
    with cluster(tmp_path) as c:
        broken = c.config([100, 0])["VirtualService/app"]
        broken["spec"]["tcp"][0]["route"][0]["destination"]["port"]["number"] = "x"
        c.server.apply(broken)
        with isthmus_run(None, *source_args(c), ready="waiting for a valid config") as gw:
            assert "VirtualService default/app: spec.tcp[0]" in "".join(gw.output)
            assert gw.proc.poll() is None
            c.routing([0, 100])
            assert wait_for(lambda: answers(c.port) == "two"), "".join(gw.output)


def test_a_replica_started_while_the_api_is_down_waits_for_it(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        api_port = c.bg.run(c.server.stop_listening())
        with isthmus_run(None, *source_args(c), ready="retrying") as gw:
            assert gw.proc.poll() is None
            c.bg.run(c.server.restart(api_port))
            assert wait_for(lambda: answers(c.port) == "one"), "".join(gw.output)
