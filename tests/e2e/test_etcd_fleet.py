"""A fleet on etcd: three ``isthmus run --source etcd://a,b,c/isthmus`` replicas and a real
3-member etcd cluster, changed with ``isthmus apply``/``delete``.

The replicas share 127.0.0.1, so each is its own gateway workload (``--namespace gw-N``)
whose Service maps the one Gateway port to its own targetPort, as three ingress gateway
deployments would; the config in etcd, and so the config version, is the same for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from isthmus.cli.main import main
from isthmus.samples.tcp_echo import start_tcp_echo
from isthmus.sources.etcd_client import EtcdClient
from tests.e2e.harness import BackgroundLoop, free_port, isthmus_run
from tests.etcd_cluster import EtcdCluster, etcd_cluster

PREFIX = "/isthmus"
GATEWAY_PORT = 9100
CONVERGE_TIMEOUT = 30.0


def base_config(gateways: list[tuple[str, int]]) -> str:
    services = "".join(
        f"""---
apiVersion: v1
kind: Service
metadata: {{name: ingress, namespace: {ns}}}
spec:
  selector: {{istio: ingressgateway}}
  ports: [{{name: tcp, port: {GATEWAY_PORT}, targetPort: {port}}}]
"""
        for ns, port in gateways
    )
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {GATEWAY_PORT}, name: tcp, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec:
  selector: {{app: app}}
  ports: [{{name: tcp, port: 9000}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp:
  - route:
    - destination: {{host: app, port: {{number: 9000}}}}
{services}"""


def workload_entry(port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-0, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{tcp: {port}}}
  labels: {{app: app}}
"""


EXTRA = """apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec:
  selector: {app: extra}
  ports: [{name: http, port: 8080}]
"""


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    port: int
    admin: int
    metrics: int
    output: list[str] = field(default_factory=list)

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return str(resp.read().decode())

    def version(self) -> str | None:
        version = json.loads(self.get(self.admin, "/config_dump"))["version"]
        return None if version is None else str(version)


@contextlib.contextmanager
def gateway(source: str, *extra: str) -> Iterator[Replica]:
    admin, metrics = free_port(), free_port()
    ports = ("--admin-port", str(admin), "--status-port", "0", "--metrics-port", str(metrics))
    with isthmus_run(None, "--source", source, *ports, "--access-log", "off", *extra) as running:
        yield Replica(running.proc, 0, admin, metrics, running.output)


def answer(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"ping\n")
        return sock.makefile("rb").readline().decode()


@dataclass
class Fleet:
    cluster: EtcdCluster
    files: Path
    echo: dict[str, int]
    replicas: list[Replica] = field(default_factory=list)
    worker_port: int = 0

    @property
    def source(self) -> str:
        return self.cluster.source(PREFIX)

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--source", self.source])
        out, err = capsys.readouterr()
        return code, out, err

    def write(self, name: str, text: str) -> str:
        path = self.files / name
        path.write_text(text)
        return str(path)

    def point_to(self, capsys: pytest.CaptureFixture[str], backend: str) -> tuple[str, str]:
        """Route to ``backend`` (v1 or v2); returns (apply's output, the new revision)."""
        code, out, err = self.cli(
            capsys, "apply", "-f", self.write("we.yaml", workload_entry(self.echo[backend]))
        )
        assert code == 0, err
        return out, self.revision()

    def revision(self) -> str:
        async def read() -> int:
            client = EtcdClient(self.cluster.endpoints)
            try:
                return (await client.list_prefix(PREFIX + "/")).revision
            finally:
                await client.close()

        return str(asyncio.run(read()))

    def converge(self, revision: str) -> float:
        """Seconds until every replica serves ``revision`` (loose deadline)."""
        start = time.monotonic()
        deadline = start + CONVERGE_TIMEOUT
        while True:
            versions = [r.version() for r in self.replicas]
            if all(v == revision for v in versions):
                return time.monotonic() - start
            assert time.monotonic() < deadline, (
                f"replicas at {versions}, not {revision}: " + "".join(self.replicas[0].output[-20:])
            )
            time.sleep(0.02)

    def answers(self) -> list[str]:
        return [answer(r.port) for r in self.replicas]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    loop = BackgroundLoop()
    try:
        echo = {v: loop.run(start_tcp_echo(0, v)).sockets[0].getsockname()[1] for v in ("v1", "v2")}
        with etcd_cluster(root) as cluster, contextlib.ExitStack() as stack:
            fleet = Fleet(cluster, root, echo)
            ports = [free_port() for _ in range(3)]
            fleet.worker_port = free_port()
            namespaces = [(f"gw-{i}", p) for i, p in enumerate(ports)]
            config = base_config([*namespaces, ("gw-w", fleet.worker_port)])
            config += "---\n" + workload_entry(echo["v1"])
            args = ["apply", "-f", fleet.write("base.yaml", config), "--source", fleet.source]
            assert main(args) == 0
            for ns, port in namespaces:
                replica = stack.enter_context(gateway(fleet.source, "--namespace", ns))
                replica.port = port
                fleet.replicas.append(replica)
            yield fleet
    finally:
        loop.close()


def test_an_apply_is_one_transaction_and_every_replica_converges(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fleet.answers() == ["v1 ping\n"] * 3
    before = fleet.revision()
    fleet.converge(before)
    both = workload_entry(fleet.echo["v2"]) + "---\n" + EXTRA
    code, out, err = fleet.cli(capsys, "apply", "-f", fleet.write("both.yaml", both))
    assert code == 0, err
    assert out.splitlines() == [
        "workloadentry.networking.istio.io/app-0 configured",
        "service/extra created",
    ]
    after = fleet.revision()
    assert int(after) == int(before) + 1  # two resources, one revision
    took = fleet.converge(after)
    with capsys.disabled():
        print(f"\n3 replicas converged on revision {after} {took:.3f}s after the apply returned")
    assert fleet.answers() == ["v2 ping\n"] * 3
    code, out, _ = fleet.cli(capsys, "apply", "-f", fleet.write("both.yaml", both))
    assert code == 0 and out.splitlines() == [
        "workloadentry.networking.istio.io/app-0 unchanged",
        "service/extra unchanged",
    ]
    assert fleet.revision() == after  # nothing to write: nothing written


def test_an_invalid_apply_writes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    before = fleet.revision()
    typo = workload_entry(fleet.echo["v1"]).replace("address:", "adress:") + "---\n" + EXTRA
    path = fleet.write("typo.yaml", typo)
    code, out, err = fleet.cli(capsys, "apply", "-f", path)
    assert code == 1 and out == ""
    assert f"{path}:5" in err and "spec.adress" in err, err
    # valid alone, rejected by the gateways once built with what the store holds
    no_hosts = base_config([]).split("---")[0].replace('hosts: ["*"]', "hosts: []")
    code, out, err = fleet.cli(capsys, "apply", "-f", fleet.write("nohosts.yaml", no_hosts))
    assert code == 1 and out == ""
    assert "would reject" in err and "Gateway default/gw" in err, err
    assert fleet.revision() == before
    assert all(r.version() == before for r in fleet.replicas)


def test_delete(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    path = fleet.write("extra.yaml", EXTRA)
    assert fleet.cli(capsys, "apply", "-f", path)[0] == 0
    before = fleet.revision()
    code, out, err = fleet.cli(capsys, "delete", "-f", path)
    assert (code, out) == (0, "service/extra deleted\n"), err
    after = fleet.revision()
    assert int(after) == int(before) + 1
    fleet.converge(after)
    code, out, err = fleet.cli(capsys, "delete", "-f", path)
    assert code == 1 and "service/extra not found" in err
    assert fleet.cli(capsys, "delete", "-f", path, "--ignore-not-found")[0] == 0
    assert fleet.revision() == after


def test_workers_serve_and_follow_the_store(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    _, before = fleet.point_to(capsys, "v1")
    with gateway(fleet.source, "--namespace", "gw-w", "--workers", "2") as sup:
        assert answer(fleet.worker_port) == "v1 ping\n"
        _, after = fleet.point_to(capsys, "v2")
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while f'isthmus_config_info{{version="{after}"}}' not in sup.get(
            sup.metrics, "/stats/prometheus"
        ):
            assert time.monotonic() < deadline, "".join(sup.output)
            time.sleep(0.05)
        # every worker reloads on the supervisor's word; a few connections reach both
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while {answer(fleet.worker_port) for _ in range(8)} != {"v2 ping\n"}:
            assert time.monotonic() < deadline, "".join(sup.output)
            time.sleep(0.05)
    assert before != after


def test_a_dead_member_changes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    first = fleet.cluster.members[0]  # every replica reads from it until it fails
    try:
        first.kill()
        fleet.cluster.wait_healthy(fleet.cluster.members[1:])
        assert len(set(fleet.answers())) == 1  # all serve, all the same config
        out, revision = fleet.point_to(capsys, "v1")
        assert out == "workloadentry.networking.istio.io/app-0 configured\n"
        fleet.converge(revision)
        assert fleet.answers() == ["v1 ping\n"] * 3
    finally:
        fleet.cluster.restart([first])


def test_a_replica_whose_revision_was_compacted_lists_again(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replica frozen while its member dies and the history it needs is compacted resumes
    on another member, finds its revision gone, and lists everything again."""
    _, start = fleet.point_to(capsys, "v1")
    first = fleet.cluster.members[0]  # a fresh replica reads from the first member
    with gateway(fleet.source, "--namespace", "gw-w") as late:
        late.port = fleet.worker_port
        assert late.version() == start
        late.proc.send_signal(signal.SIGSTOP)
        try:
            first.kill()
            fleet.cluster.wait_healthy(fleet.cluster.members[1:])
            fleet.point_to(capsys, "v2")
            _, revision = fleet.point_to(capsys, "v1")

            async def compact() -> None:
                client = EtcdClient(fleet.cluster.endpoints[1:])
                await client.compact(int(revision))
                await client.close()

            asyncio.run(compact())
        finally:
            late.proc.send_signal(signal.SIGCONT)
            fleet.cluster.restart([first])
        fleet.replicas.append(late)
        try:
            fleet.converge(revision)
        finally:
            fleet.replicas.remove(late)
        assert answer(late.port) == "v1 ping\n"
        assert "listing again" in "".join(late.output)


def test_no_etcd_keeps_the_last_config_serving_until_it_is_back(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    _, serving = fleet.point_to(capsys, "v1")
    fleet.converge(serving)
    try:
        fleet.cluster.kill()
        time.sleep(0.5)  # the replicas notice and start reconnecting
        assert fleet.answers() == ["v1 ping\n"] * 3
        for replica in fleet.replicas:
            assert replica.version() == serving
            metrics = replica.get(replica.metrics, "/stats/prometheus")
            assert f'isthmus_config_info{{version="{serving}"}}' in metrics
    finally:
        fleet.cluster.restart()
    _, revision = fleet.point_to(capsys, "v2")
    took = fleet.converge(revision)
    with capsys.disabled():
        print(
            f"\n3 replicas caught up with revision {revision} {took:.3f}s after an apply "
            "made once etcd was back"
        )
    assert fleet.answers() == ["v2 ping\n"] * 3
