"""A real 3-member etcd cluster on 127.0.0.1 (Debian's ``etcd-server``), for tests.

Members listen on free ports, keep their data under a directory the caller owns, and use
shorter raft timings than etcd's (an election after a kill takes about a second), not so short
that a busy machine delaying a heartbeat starts needless elections.  Everything started
here is killed when the context manager exits; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.harness import free_port

START_TIMEOUT = 30.0


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    initial_cluster: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.name}.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        etcd = shutil.which("etcd")
        assert etcd, "etcd not installed: apt-get install etcd-server (.ci/run does)"
        cmd = [
            etcd,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            f"http://127.0.0.1:{self.client_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{self.client_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-token",
            "isthmus-tests",
            "--initial-cluster-state",
            "new",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "750",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
            "--log-level",
            "warn",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def healthy(self) -> bool:
        """The member answers and has a leader (etcd's own /health)."""
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


class EtcdCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.members = [
            Member(f"m{i}", free_port(), free_port(), root / f"m{i}.data") for i in range(size)
        ]
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        for member in self.members:
            member.initial_cluster = initial

    def source(self, prefix: str = "/isthmus") -> str:
        """``--source`` for all members, in order."""
        return "etcd://" + ",".join(m.endpoint for m in self.members) + prefix

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", m.client_port) for m in self.members]

    def start(self) -> None:
        for member in self.members:
            member.start()
        self.wait_healthy()

    def wait_healthy(self, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for member in members or self.members:
            while not member.healthy():
                assert member.proc is not None and member.proc.poll() is None, (
                    f"etcd {member.name} exited: {member.log_path.read_text()[-2000:]}"
                )
                assert time.monotonic() < deadline, (
                    f"etcd {member.name} not healthy: {member.log_path.read_text()[-2000:]}"
                )
                time.sleep(0.05)

    def restart(self, members: list[Member] | None = None) -> None:
        for member in members or self.members:
            if member.proc is None or member.proc.poll() is not None:
                member.start()
        self.wait_healthy(members)

    def kill(self, members: list[Member] | None = None) -> None:
        for member in members or self.members:
            member.kill()


@contextlib.contextmanager
def etcd_cluster(root: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill()
