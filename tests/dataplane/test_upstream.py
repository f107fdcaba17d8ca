"""connect_upstream against real sockets: skipping down endpoints, limits, DNS, socket options."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

import pytest

from isthmus.dataplane.balancer import ClusterStates
from isthmus.dataplane.relay import relay
from isthmus.dataplane.upstream import (
    NoHealthyUpstream,
    UpstreamConnectError,
    UpstreamOverflow,
    connect_upstream,
)
from isthmus.samples.tcp_echo import start_tcp_echo
from isthmus.snapshot.types import (
    Cluster,
    ConnectionPool,
    Endpoint,
    LoadBalancer,
    OutlierDetection,
    TcpKeepalive,
)

from .conftest import Run
from .util import closed_port, listener

RR = LoadBalancer(simple="ROUND_ROBIN")


def cluster(*endpoints: Endpoint, pool: ConnectionPool | None = None, **kw: object) -> Cluster:
    return Cluster(
        name="outbound|9000||tcp-echo.default.svc.cluster.local",
        service="tcp-echo.default.svc.cluster.local",
        port=9000,
        subset="",
        type="EDS",
        endpoints=endpoints,
        connection_pool=pool or ConnectionPool(),
        **kw,  # type: ignore[arg-type]
    )


def ep(port: int, address: str = "127.0.0.1", resolve: bool = False) -> Endpoint:
    return Endpoint(address, port, resolve=resolve)


def test_skips_a_down_endpoint_and_reports_it(run: Run) -> None:
    async def main() -> None:
        with listener() as up:
            down = closed_port()
            live = up.getsockname()[1]
            c = cluster(ep(down), ep(live), load_balancer=RR, outlier_detection=OutlierDetection())
            states = ClusterStates()
            with await connect_upstream(c, states) as conn:
                assert conn.endpoint.port == live
                assert conn.attempts == 2
                (failure,) = conn.failures
                assert failure.reason == "connection failure"
                assert failure.errno == errno.ECONNREFUSED
                assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                state = states.get(c)
                dead, alive = state.endpoints
                assert dead.outlier.consecutive_5xx == 1
                assert (alive.active_requests, alive.active_connections) == (1, 1)
                conn.sock.close()
            assert (alive.active_requests, alive.active_connections) == (0, 0)
            assert state.active_connections == 0

    run(main())


def test_all_endpoints_down_raises_connect_error(run: Run) -> None:
    async def main() -> UpstreamConnectError:
        c = cluster(ep(closed_port()), ep(closed_port()))
        states = ClusterStates()
        with pytest.raises(UpstreamConnectError) as caught:
            await connect_upstream(c, states)
        assert states.get(c).active_connections == 0
        return caught.value

    error = run(main())
    assert error.response_flag == "UF"
    assert len(error.failures) == 2  # two distinct endpoints, each tried once
    assert len({f.endpoint for f in error.failures}) == 2
    assert error.local_reply_body == (
        "upstream connect error or disconnect/reset before headers. reset reason: "
        "connection failure, transport failure reason: delayed connect error: 111"
    )


def test_no_endpoints_is_no_healthy_upstream(run: Run) -> None:
    async def main() -> None:
        with pytest.raises(NoHealthyUpstream) as caught:
            await connect_upstream(cluster(), ClusterStates())
        assert caught.value.response_flag == "UH"

    run(main())


def test_max_connections_is_a_circuit_breaker(run: Run) -> None:
    async def main() -> None:
        with listener() as up:
            c = cluster(ep(up.getsockname()[1]), pool=ConnectionPool(max_connections=1))
            states = ClusterStates()
            first = await connect_upstream(c, states)
            with pytest.raises(UpstreamOverflow) as caught:
                await connect_upstream(c, states)
            assert caught.value.response_flag == "UO"
            first.close()
            second = await connect_upstream(c, states)
            second.close()

    run(main())


def test_resolves_dns_endpoints_at_connect_time(run: Run) -> None:
    async def main() -> None:
        # Bound the way the resolver orders "localhost", so either family works.
        with socket.create_server(("localhost", 0)) as up:
            port = up.getsockname()[1]
            conn = await connect_upstream(
                cluster(ep(port, "localhost", resolve=True)), ClusterStates()
            )
            with conn:
                assert conn.address[1] == port
                conn.sock.close()

    run(main())


def test_applies_tcp_keepalive(run: Run) -> None:
    keepalive = TcpKeepalive(time=30, interval=5, probes=3)

    async def main() -> None:
        with listener() as up:
            pool = ConnectionPool(tcp_keepalive=keepalive)
            conn = await connect_upstream(
                cluster(ep(up.getsockname()[1]), pool=pool), ClusterStates()
            )
            with conn:
                s = conn.sock
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
                if hasattr(socket, "TCP_KEEPIDLE"):
                    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
                    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
                s.close()

    run(main())


def test_connect_timeout_counts_as_a_gateway_error(run: Run) -> None:
    async def main() -> None:
        # A listener whose accept queue is full drops new SYNs: the connect hangs.
        full = socket.socket()
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        with full, contextlib.ExitStack() as stack:
            for _ in range(3):
                s = stack.enter_context(socket.socket())
                s.setblocking(False)
                s.connect_ex(full.getsockname())
                fillers.append(s)
            await asyncio.sleep(0.05)
            pool = ConnectionPool(connect_timeout=0.2)
            c = cluster(ep(full.getsockname()[1]), pool=pool, outlier_detection=OutlierDetection())
            states = ClusterStates()
            with pytest.raises(UpstreamConnectError) as caught:
                await connect_upstream(c, states)
            assert caught.value.reason == "connection timeout"
            (endpoint,) = states.get(c).endpoints
            assert endpoint.outlier.consecutive_gateway_errors == 1

    run(main())


def test_relay_to_tcp_echo_through_connect_upstream(run: Run) -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        echo = await start_tcp_echo(0, "one")
        async with echo:
            port = echo.sockets[0].getsockname()[1]
            c = cluster(ep(closed_port()), ep(port), load_balancer=RR)
            with listener() as gateway, socket.socket() as client:
                client.setblocking(False)
                await loop.sock_connect(client, gateway.getsockname())
                accepted, peer = await loop.sock_accept(gateway)
                with await connect_upstream(c, ClusterStates(), peer[0]) as conn:
                    task = asyncio.create_task(relay(accepted, conn.sock))
                    await loop.sock_sendall(client, b"hello\n")
                    client.shutdown(socket.SHUT_WR)
                    reply = bytearray()
                    while data := await loop.sock_recv(client, 1024):
                        reply += data
                    await task
                return bytes(reply)

    assert run(main()) == b"one hello\n"
