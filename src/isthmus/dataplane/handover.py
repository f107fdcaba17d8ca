"""Listening sockets passed between processes (SCM_RIGHTS), so a socket is opened once and
every process that serves it shares the *same* accept queue: a worker dying or an old
process handing over to a new one never resets a queued connection (separate SO_REUSEPORT
sockets would).  HAProxy's ``-x`` and Envoy's hot restart do the same."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

MAX_FDS = 250  # per message; SCM_RIGHTS allows 253 on Linux


@dataclass
class ListenerSockets:
    """Listening sockets by listener name, owned by whoever holds this registry."""

    sockets: dict[str, socket.socket] = field(default_factory=dict)

    def take(self, name: str, address: str, port: int) -> socket.socket | None:
        """The inherited socket for a listener if it is bound where the listener wants."""
        sock = self.sockets.get(name)
        if sock is None:
            return None
        bound = sock.getsockname()
        if bound[1] != port or (address not in ("0.0.0.0", "::") and bound[0] != address):
            return None
        return sock

    def add(self, name: str, sock: socket.socket) -> None:
        old = self.sockets.get(name)
        if old is not None and old is not sock:
            old.close()
        self.sockets[name] = sock

    def drop(self, name: str) -> None:
        sock = self.sockets.pop(name, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()


def send_sockets(
    channel: socket.socket,
    sockets: dict[str, socket.socket],
    message: dict[str, object] | None = None,
) -> None:
    """Send ``sockets`` (and a small JSON ``message``) over a Unix socket."""
    names = list(sockets)[:MAX_FDS]
    body = json.dumps({"names": names, **(message or {})}).encode() + b"\n"
    socket.send_fds(channel, [body], [sockets[n].fileno() for n in names])


def receive_sockets(channel: socket.socket) -> tuple[dict[str, socket.socket], dict[str, object]]:
    """The other side of :func:`send_sockets` (blocking)."""
    data, fds, _flags, _addr = socket.recv_fds(channel, 1 << 16, MAX_FDS)
    message = json.loads(data.decode() or "{}")
    names = message.pop("names", [])
    out: dict[str, socket.socket] = {}
    for name, fd in zip(names, fds, strict=False):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        out[name] = sock
    return out, message
