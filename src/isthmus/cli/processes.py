"""Processes around one gateway: socket takeover between an old and a new isthmus, and a
supervisor that runs ``--workers N`` serving processes on sockets it opened once.

Takeover (``--takeover PATH``): the running process listens on the Unix socket PATH.  A new
process connects, receives every listening socket (SCM_RIGHTS), starts serving on them, then
says ``ready``; the old one stops accepting, drains and exits 0.  Both accept from the same
sockets during the overlap, so no queued connection is refused or reset.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable

from isthmus.dataplane.handover import ListenerSockets, receive_sockets, send_sockets

HANDOVER_TIMEOUT = 30.0


class Takeover:
    """The new process's side: sockets taken from a running one, and the ready signal."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.channel: socket.socket | None = None
        self.sockets = ListenerSockets()

    def fetch(self) -> bool:
        """Take the running process's sockets; False when nothing listens on ``path``."""
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        channel.settimeout(HANDOVER_TIMEOUT)
        try:
            channel.connect(self.path)
        except OSError:
            channel.close()
            return False
        channel.sendall(b"takeover\n")
        sockets, _ = receive_sockets(channel)
        for name, sock in sockets.items():
            self.sockets.add(name, sock)
        self.channel = channel
        return True

    def ready(self) -> None:
        """We serve: the old process may stop accepting."""
        if self.channel is not None:
            with contextlib.suppress(OSError):
                self.channel.sendall(b"ready\n")
                self.channel.recv(16)  # wait until it has stopped accepting
            self.channel.close()
            self.channel = None


class HandoverServer:
    """The running process's side, in a thread (blocking I/O, off the event loop).

    ``sockets()`` is called on the loop's thread via ``call`` to read the current sockets;
    ``handed_over()`` runs there too once the new process is ready."""

    def __init__(
        self,
        path: str,
        sockets: Callable[[], dict[str, socket.socket]],
        handed_over: Callable[[], None],
        call: Callable[[Callable[[], object]], object],
    ) -> None:
        self.path = path
        self._sockets = sockets
        self._handed_over = handed_over
        self._call = call
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        os.chmod(path, 0o600)  # only this user may take our sockets
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True, name="handover")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(HANDOVER_TIMEOUT)
                try:
                    if conn.recv(16) != b"takeover\n":
                        continue
                    send_sockets(conn, dict(self._call(self._sockets)))  # type: ignore[call-overload]
                    if conn.recv(16) != b"ready\n":
                        continue  # the new process failed: keep serving
                    self._call(self._handed_over)
                    conn.sendall(b"ok\n")
                except OSError:
                    continue
                return

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def worker_fds_arg(sockets: dict[str, socket.socket]) -> str:
    return ",".join(f"{name}={sock.fileno()}" for name, sock in sockets.items())


def parse_worker_fds(text: str) -> ListenerSockets:
    registry = ListenerSockets()
    for item in filter(None, text.split(",")):
        name, _, fd = item.rpartition("=")
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        registry.add(name, sock)
    return registry
