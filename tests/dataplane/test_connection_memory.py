"""A closed client connection leaves nothing for the garbage collector: its parser is freed
as soon as the connection is."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from isthmus.dataplane.balancer import ClusterStates
from isthmus.dataplane.http_proxy import DownstreamHttp, HttpContext
from isthmus.dataplane.http_upstream import HttpPool
from isthmus.proto.http1 import RequestParser


class _Gateway:
    snapshot = None


class _Transport(asyncio.Transport):
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def close(self) -> None:
        pass


def test_a_closed_connection_frees_its_parser_without_the_collector() -> None:
    async def serve_and_close() -> weakref.ref[RequestParser]:
        ctx = HttpContext(_Gateway(), HttpPool(ClusterStates()))  # type: ignore[arg-type]
        conn = DownstreamHttp(ctx, "http.8080", "chain", "http", 8080)
        conn.connection_made(_Transport())
        conn.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n")  # half a head
        ref = weakref.ref(conn.parser)
        conn.connection_lost(None)
        assert not ctx.first_heads and not ctx.responses and not ctx.connections
        del conn
        return ref

    gc.collect()
    gc.disable()
    try:
        ref = asyncio.run(serve_and_close())
        assert ref() is None
    finally:
        gc.enable()
