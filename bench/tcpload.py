"""Load pieces for ``bench/tcp.py``, each run as its own process so none steals the others' GIL.

    python bench/tcpload.py echo PORT                 an echo backend on 127.0.0.1:PORT
    python bench/tcpload.py rtt PORT START SECONDS [SIZE]   SIZE-byte ping-pong, one connection
    python bench/tcpload.py conn PORT START SECONDS         connect, 1 byte each way, close

START is a wall-clock time (``time.time()``): clients connect and warm up before it, count from
it for SECONDS, so a caller can line several up and sample CPU over the same window.

The clients print one JSON line (``count``, ``seconds``, ``errors``).  They use plain blocking
sockets: a blocking ``send``/``recv`` pair is the cheapest loop Python has, cheaper than any event
loop.  The echo backend is an asyncio ``Protocol`` on uvloop when uvloop is importable; the
``direct`` row of the benchmark shows what it and the clients can reach without a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
import sys
import time

HOST = "127.0.0.1"
IO_TIMEOUT = 5.0
"""No single send/recv/connect may block longer than this: a stalled proxy ends the run."""


def _timeouts(sock: socket.socket) -> None:
    """Kernel-side timeouts on a *blocking* socket.

    ``settimeout`` would make CPython poll() before every call (an extra system call per
    message); SO_RCVTIMEO/SO_SNDTIMEO bound a stall without that cost.
    """
    tv = struct.pack("ll", int(IO_TIMEOUT), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


class _Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once what was written is flushed


async def _serve_echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Echo, HOST, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def serve_echo(port: int) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_echo(port))
    else:
        uvloop.run(_serve_echo(port))


def _report(count: int, seconds: float, errors: int, error: str | None = None) -> None:
    print(json.dumps({"count": count, "seconds": seconds, "errors": errors, "error": error}))


def rtt(port: int, start_at: float, seconds: float, size: int) -> None:
    """Round trips of ``size`` bytes on one connection, one message in flight, for ``seconds``."""
    sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
    sock.settimeout(None)
    _timeouts(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size
    buf = bytearray(size)
    view = memoryview(buf)
    send, recv_into = sock.send, sock.recv_into
    perf = time.perf_counter

    def one() -> None:
        if send(msg) != size:
            raise OSError("short send")
        got = 0
        while got < size:
            n = recv_into(view[got:], size - got)
            if not n:
                raise OSError("connection closed by the peer")
            got += n

    count = 0
    try:
        for _ in range(200):  # warm-up, not counted
            one()
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        start = perf()
        end = start + seconds
        now = start
        while now < end:
            for _ in range(100):
                one()
            count += 100
            now = perf()
    except OSError as exc:
        _report(0, 0.0, 1, str(exc))
        return
    finally:
        sock.close()
    _report(count, now - start, 0)


def conn(port: int, start_at: float, seconds: float) -> None:
    """New connections until ``start_at + seconds`` (wall clock): connect, 1 byte each way, close.

    Several of these run side by side; ``start_at`` lines their windows up.
    """
    addr = (HOST, port)
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    perf = time.perf_counter
    start = perf()
    end = start + seconds
    count = errors = 0
    last_error: str | None = None
    now = start
    while now < end:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            _timeouts(sock)
            sock.connect(addr)
            sock.send(b"x")
            if sock.recv(1) == b"x":
                count += 1
            else:
                errors += 1
                last_error = "no echo"
        except OSError as exc:
            errors += 1
            last_error = str(exc)
            time.sleep(0.001)  # e.g. no ephemeral port left: do not spin
        finally:
            sock.close()
        now = perf()
        if errors > 10000:
            break
    _report(count, now - start, errors, last_error)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("echo", "rtt", "conn"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, port = argv[0], int(argv[1])
    with contextlib.suppress(KeyboardInterrupt):
        if mode == "echo":
            serve_echo(port)
        elif mode == "rtt":
            rtt(port, float(argv[2]), float(argv[3]), int(argv[4]) if len(argv) > 4 else 64)
        else:
            conn(port, float(argv[2]), float(argv[3]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
