"""The local address the access log shows: known from the listener unless it is a wildcard."""

from __future__ import annotations

import socket

from isthmus.dataplane.http_proxy import format_address, listener_address


def test_a_listener_on_one_address_gives_every_connection_that_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert listener_address(sock) == f"127.0.0.1:{sock.getsockname()[1]}"


def test_a_wildcard_listener_leaves_it_to_each_connection() -> None:
    with socket.socket() as sock:  # unbound: its name is the wildcard (tests bind 127.0.0.1 only)
        assert listener_address(sock) is None
    assert format_address(None) == ""
