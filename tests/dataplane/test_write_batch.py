"""WriteBatch over real sockets: the first write of a loop pass goes out at once, the rest at
the end of the pass, every transport's bytes in order; flush() hands over what is held."""

from __future__ import annotations

import asyncio
import socket

from isthmus.dataplane.write_batch import WriteBatch
from tests.dataplane.conftest import Run


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    return transport, theirs


def _arrived(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""


def test_later_writes_of_a_pass_wait_for_its_end_in_order(run: Run) -> None:
    async def go() -> None:
        batch = WriteBatch()
        (a, a_peer), (b, b_peer) = await _pair(), await _pair()
        seen: dict[str, bytes] = {}
        held: list[int] = []

        def one_pass() -> None:  # as the callbacks of one event-loop pass would write
            batch.write(a, b"a1 ")
            batch.write(b, b"b1 ")
            batch.write(a, b"a2 ")
            batch.write(a, b"a3")
            seen["a"], seen["b"] = _arrived(a_peer), _arrived(b_peer)
            held.append(len(batch))

        asyncio.get_running_loop().call_soon(one_pass)
        await asyncio.sleep(0.05)
        assert (seen, held) == ({"a": b"a1 ", "b": b""}, [3])
        assert (_arrived(a_peer), _arrived(b_peer), len(batch)) == (b"a2 a3", b"b1 ", 0)
        # the next pass starts afresh: its first write goes out at once again
        batch.write(b, b"b2")
        assert _arrived(b_peer) == b"b2"
        await asyncio.sleep(0)
        for transport, peer in ((a, a_peer), (b, b_peer)):
            transport.close()
            peer.close()

    run(go())


def test_flush_hands_over_at_once_and_a_closed_transport_gets_nothing(run: Run) -> None:
    async def go() -> None:
        batch = WriteBatch()
        (a, a_peer), (b, b_peer) = await _pair(), await _pair()
        batch.write(a, b"first ")
        batch.write(a, b"second")
        batch.write(b, b"lost")
        b.abort()  # closed before the pass ended: its held bytes are dropped
        batch.flush()
        assert _arrived(a_peer) == b"first second"
        await asyncio.sleep(0.01)
        assert b_peer.recv(100) == b""  # end of stream, nothing before it
        a.close()
        a_peer.close()
        b_peer.close()

    run(go())


class _Recorder(asyncio.Transport):
    """A transport that records what it is given, and writes through the batch once from
    inside ``write`` (as a protocol callback run by a real transport's write could)."""

    def __init__(self, batch: WriteBatch, log: list[bytes]) -> None:
        super().__init__()
        self.batch, self.log = batch, log

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.log.append(bytes(data))
        if data == b"1":
            self.batch.write(self, b"3")

    def is_closing(self) -> bool:
        return False


def test_bytes_written_during_a_flush_follow_the_ones_held_before(run: Run) -> None:
    async def go() -> list[bytes]:
        batch, log = WriteBatch(), []
        transport = _Recorder(batch, log)
        batch.write(transport, b"0")  # the pass's first write: at once
        batch.write(transport, b"1")
        batch.write(transport, b"2")
        batch.flush()
        await asyncio.sleep(0)
        return log

    assert run(go()) == [b"0", b"1", b"2", b"3"]
