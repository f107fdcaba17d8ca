"""The TCP relay on both engines: bulk integrity, half-close, resets, bounded buffers, timers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from isthmus.dataplane.relay import DEFAULT_BUFFER_SIZE, READ_CHUNK, splice_supported
from isthmus.dataplane.relaybase import set_reset_on_close

from .conftest import Run
from .util import MiB, read_digest, read_to_end, send_all, wired_relay

ENGINES = [
    pytest.param(
        True,
        id="splice",
        marks=pytest.mark.skipif(not splice_supported(), reason="no os.splice here"),
    ),
    pytest.param(False, id="protocol"),
]


@pytest.fixture(scope="module")
def payloads() -> tuple[bytes, bytes]:
    return os.urandom(64 * MiB), os.urandom(64 * MiB)


@pytest.mark.parametrize("use_splice", ENGINES)
def test_moves_64_mib_intact_both_ways(
    run: Run, use_splice: bool, payloads: tuple[bytes, bytes]
) -> None:
    up, down = payloads

    async def main() -> tuple[tuple[int, str], tuple[int, str], object]:
        async with wired_relay(use_splice=use_splice) as w:
            _, _, at_client, at_backend = await asyncio.gather(
                send_all(w.client, up),
                send_all(w.backend, down),
                read_digest(w.client),
                read_digest(w.backend),
            )
            return at_client, at_backend, await w.relay

    at_client, at_backend, stats = run(main(), timeout=120)
    assert at_backend == (len(up), hashlib.sha256(up).hexdigest())
    assert at_client == (len(down), hashlib.sha256(down).hexdigest())
    assert stats.mode == ("splice" if use_splice else "protocol")
    assert (stats.client_to_upstream, stats.upstream_to_client) == (len(up), len(down))
    assert stats.end_reason == "eof"
    assert stats.ended is not None


@pytest.mark.parametrize("use_splice", ENGINES)
def test_half_close_passes_through_and_reply_still_arrives(run: Run, use_splice: bool) -> None:
    reply = os.urandom(MiB)

    async def main() -> tuple[bytes, bytes, object]:
        loop = asyncio.get_running_loop()
        async with wired_relay(use_splice=use_splice) as w:
            await loop.sock_sendall(w.client, b"hello\n")
            w.client.shutdown(socket.SHUT_WR)
            seen_by_backend, how = await read_to_end(w.backend)
            assert how == "eof"
            await send_all(w.backend, reply)
            seen_by_client, how = await read_to_end(w.client)
            assert how == "eof"
            return seen_by_backend, seen_by_client, await w.relay

    seen_by_backend, seen_by_client, stats = run(main())
    assert seen_by_backend == b"hello\n"
    assert seen_by_client == reply
    assert stats.end_reason == "eof"


@pytest.mark.parametrize("use_splice", ENGINES)
def test_upstream_reset_mid_stream_resets_the_client(run: Run, use_splice: bool) -> None:
    async def main() -> tuple[int, str, object]:
        loop = asyncio.get_running_loop()
        async with wired_relay(use_splice=use_splice) as w:
            sender = asyncio.create_task(send_all(w.client, os.urandom(4 * MiB)))
            await loop.sock_sendall(w.backend, b"x" * 100_000)
            first = await loop.sock_recv(w.client, 65536)
            assert first
            set_reset_on_close(w.backend)
            w.backend.close()
            rest, how = await read_to_end(w.client)
            stats = await w.relay
            sender.cancel()
            (sent,) = await asyncio.gather(sender, return_exceptions=True)
            # The reset is reported to whichever client call meets it first.
            if isinstance(sent, ConnectionResetError):
                how = "reset"
            return len(first) + len(rest), how, stats

    received, how, stats = run(main())
    assert 0 < received <= 100_000
    assert how == "reset"
    assert stats.end_reason == "upstream_reset"


@pytest.mark.parametrize("use_splice", ENGINES)
def test_client_reset_resets_the_upstream(run: Run, use_splice: bool) -> None:
    async def main() -> tuple[str, object]:
        loop = asyncio.get_running_loop()
        async with wired_relay(use_splice=use_splice) as w:
            await loop.sock_sendall(w.client, b"ping")
            assert await loop.sock_recv(w.backend, 16) == b"ping"
            set_reset_on_close(w.client)
            w.client.close()
            _, how = await read_to_end(w.backend)
            return how, await w.relay

    how, stats = run(main())
    assert how == "reset"
    assert stats.end_reason == "client_reset"


@pytest.mark.parametrize("use_splice", ENGINES)
def test_slow_reader_keeps_buffering_bounded(run: Run, use_splice: bool) -> None:
    data = os.urandom(8 * MiB)

    async def slow_read(sock: socket.socket) -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256()
        total = 0
        while chunk := await loop.sock_recv(sock, 4096):
            digest.update(chunk)
            total += len(chunk)
            await asyncio.sleep(0)
        return total, digest.hexdigest()

    async def main() -> tuple[tuple[int, str], object]:
        async with wired_relay(
            use_splice=use_splice, backend_rcvbuf=16 * 1024, upstream_sndbuf=16 * 1024
        ) as w:
            _, got = await asyncio.gather(send_all(w.client, data), slow_read(w.backend))
            w.backend.shutdown(socket.SHUT_WR)
            await read_to_end(w.client)
            return got, await w.relay

    got, stats = run(main(), timeout=120)
    assert got == (len(data), hashlib.sha256(data).hexdigest())
    if use_splice:
        assert 0 < stats.peak_buffered_to_upstream <= DEFAULT_BUFFER_SIZE
    else:
        # The write buffer filled past its high-water mark (so reading was paused there),
        # and never held more than the bound plus the one read that crossed it.
        assert stats.peak_buffered_to_upstream > DEFAULT_BUFFER_SIZE
        assert stats.peak_buffered_to_upstream <= DEFAULT_BUFFER_SIZE + READ_CHUNK


@pytest.mark.parametrize("use_splice", ENGINES)
@pytest.mark.parametrize(
    ("timer", "reason"), [("idle_timeout", "idle_timeout"), ("max_duration", "max_duration")]
)
def test_timers_close_both_sides(run: Run, use_splice: bool, timer: str, reason: str) -> None:
    async def main() -> tuple[str, str, object]:
        loop = asyncio.get_running_loop()
        async with wired_relay(use_splice=use_splice, **{timer: 0.2}) as w:
            await loop.sock_sendall(w.client, b"one")
            assert await loop.sock_recv(w.backend, 16) == b"one"
            _, client_end = await read_to_end(w.client)
            _, backend_end = await read_to_end(w.backend)
            return client_end, backend_end, await w.relay

    client_end, backend_end, stats = run(main())
    assert (client_end, backend_end) == ("eof", "eof")
    assert stats.end_reason == reason


@pytest.mark.parametrize("use_splice", ENGINES)
def test_cancelling_the_relay_closes_both_sides(run: Run, use_splice: bool) -> None:
    async def main() -> tuple[str, str, object]:
        loop = asyncio.get_running_loop()
        async with wired_relay(use_splice=use_splice) as w:
            await loop.sock_sendall(w.client, b"one")
            assert await loop.sock_recv(w.backend, 16) == b"one"
            w.relay.cancel()
            await asyncio.gather(w.relay, return_exceptions=True)
            _, client_end = await read_to_end(w.client)
            _, backend_end = await read_to_end(w.backend)
            return client_end, backend_end, w.relay.cancelled()

    assert run(main()) == ("eof", "eof", True)
