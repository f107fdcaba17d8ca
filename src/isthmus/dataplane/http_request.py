"""One HTTP request at the gateway: route it on the snapshot read at its headers, then answer
locally (redirect, direct response, CORS preflight, fault, no route) or forward it upstream
with Istio's retry, timeout, header and mirror policies."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from isthmus.dataplane import local_reply as lr
from isthmus.dataplane.http_exchange import RequestBody
from isthmus.dataplane.http_forward import Forward, frame, serialize_request
from isthmus.dataplane.http_headers import (
    Headers,
    add_trace,
    upstream_request_headers,
)
from isthmus.dataplane.routing import (
    chance,
    cors_origin_allowed,
    cors_preflight_headers,
    https_redirect_location,
    pick_weighted,
    redirect_location,
    rewrite_path,
    shadow_authority,
)
from isthmus.dataplane.upstream import UpstreamConnectError
from isthmus.proto.http1 import RequestHead, ResponseHead
from isthmus.snapshot.match import LazyRequest
from isthmus.snapshot.types import (
    Cluster,
    DirectResponseAction,
    Endpoint,
    ForwardAction,
    HttpConnectionManager,
    RedirectAction,
    Route,
    Snapshot,
    WeightedCluster,
)

if TYPE_CHECKING:
    from isthmus.dataplane.http_proxy import DownstreamHttp


@dataclass(slots=True)
class Outcome:
    """What the connection needs to know when a request is over."""

    keep_alive: bool
    upgraded: bool = False


def _reply(conn: DownstreamHttp, reply: lr.LocalReply, head: RequestHead) -> Outcome:
    keep = head.keep_alive and not conn.draining
    conn.write(lr.render_reply(reply, keep_alive=keep, head_only=head.method == "HEAD"))
    conn.note_response(reply.status, reply.flag)
    return Outcome(keep)


def _send(
    conn: DownstreamHttp,
    head: RequestHead,
    status: int,
    body: bytes = b"",
    extra: list[tuple[str, str]] | None = None,
    content_type: str | None = "text/plain",
) -> Outcome:
    keep = head.keep_alive and not conn.draining
    conn.write(
        lr.render(
            status,
            body,
            content_type=content_type,
            keep_alive=keep,
            extra=extra,
            head_only=head.method == "HEAD",
        )
    )
    conn.note_response(status, "")
    return Outcome(keep)


def handle_request(conn: DownstreamHttp, head: RequestHead, body: RequestBody) -> Outcome | None:
    """Route the request and answer it, or start what will: ``None`` means a forward (or a
    Task) is under way and will call ``conn.finish`` itself."""
    snapshot = conn.gateway.snapshot  # read once, at the request's headers
    hcm = conn.hcm if snapshot is conn.hcm_snapshot else conn.route_table(snapshot)
    if head.method == "CONNECT":
        if conn.mesh is None:
            return _reply(conn, lr.CONNECT_REFUSED, head)
        conn.run(_tunnel(conn, snapshot, head))
        return None
    if hcm is None:
        return _reply(conn, lr.NO_ROUTE, head)
    authority = head.host or ""
    vhost = hcm.route_config.find_virtual_host(authority)
    if vhost is None:
        if conn.mesh is not None and conn.mesh.allow_any:
            return _passthrough(conn, head, body, authority)
        return _reply(conn, lr.NO_ROUTE if conn.mesh is None else lr.BLACKHOLE, head)
    if vhost.require_tls and conn.scheme == "http":
        location = https_redirect_location(authority, head.path, head.query)
        return _send(conn, head, 301, extra=[("location", location)], content_type=None)
    view = LazyRequest(
        head.path, head.method, authority, conn.scheme, conn.gateway_port, head.headers, head.query
    )
    route = vhost.select(view)
    if route is None:
        return _reply(conn, lr.NO_ROUTE, head)
    conn.last_route = route
    action = route.action
    if isinstance(action, ForwardAction) and action.cors is None and action.fault is None:
        return _forward(conn, snapshot, head, body, route, action, authority, None)
    if isinstance(action, RedirectAction):
        location = redirect_location(
            action, conn.scheme, authority, head.path, head.query, conn.gateway_port
        )
        return _send(conn, head, action.code, extra=[("location", location)], content_type=None)
    if isinstance(action, DirectResponseAction):
        return _send(conn, head, action.status, action.body)
    assert isinstance(action, ForwardAction)
    origin = view.headers.get("origin") if action.cors is not None else None
    if (
        action.cors is not None
        and origin is not None
        and head.method == "OPTIONS"
        and ("access-control-request-method" in view.headers)
        and cors_origin_allowed(action.cors, origin)
    ):
        return _send(
            conn, head, 200, extra=cors_preflight_headers(action.cors, origin), content_type=None
        )
    fault = action.fault
    if fault is not None:
        if fault.delay and chance(fault.delay_percent, conn.rng):
            conn.run(
                _delayed(conn, fault.delay, snapshot, head, body, route, action, authority, origin)
            )
            return None
        if fault.abort_status is not None and chance(fault.abort_percent, conn.rng):
            return _reply(conn, lr.fault_abort(fault.abort_status), head)
    return _forward(conn, snapshot, head, body, route, action, authority, origin)


async def _delayed(
    conn: DownstreamHttp,
    delay: float,
    snapshot: Snapshot,
    head: RequestHead,
    body: RequestBody,
    route: Route,
    action: ForwardAction,
    authority: str,
    origin: str | None,
) -> Outcome | None:
    """A fault's delay, then the rest of the fault (an abort) or the forward."""
    await asyncio.sleep(delay)
    fault = action.fault
    if (
        fault is not None
        and fault.abort_status is not None
        and chance(fault.abort_percent, conn.rng)
    ):
        return _reply(conn, lr.fault_abort(fault.abort_status), head)
    return _forward(conn, snapshot, head, body, route, action, authority, origin)


def _forward(
    conn: DownstreamHttp,
    snapshot: Snapshot,
    head: RequestHead,
    body: RequestBody,
    route: Route,
    action: ForwardAction,
    authority: str,
    origin: str | None,
) -> Outcome | None:
    clusters = action.clusters
    dest = clusters[0] if len(clusters) == 1 else pick_weighted(clusters, conn.rng)
    cluster = snapshot.clusters.get(dest.cluster)
    if cluster is None:
        return _reply(conn, lr.NO_CLUSTER, head)
    path = head.path
    rewrite = action.rewrite
    if rewrite is not None:
        path = rewrite_path(rewrite, route.match, path)
        if rewrite.authority:
            authority = rewrite.authority
    query = head.query
    target = f"{path}?{query}" if query else path
    upgrade = head.upgrade
    if upgrade is not None and upgrade == "h2c":  # the parser lower-cased it
        upgrade = None
    settings = conn.settings
    conn.request_id = rid = request_id(conn.rng.getrandbits(128))
    headers, client_ip = upstream_request_headers(
        head.headers,
        peer_ip=conn.peer_ip,
        scheme=conn.scheme,
        request_id=rid,
        trusted_hops=settings.trusted_hops,
        upgrade=upgrade,
        authority=authority,
    )
    if settings.tracing is not None:
        add_trace(headers, settings.tracing, conn.rng.getrandbits(192))
    headers = dest.request_headers.apply(action.request_headers.apply(headers))
    if head.chunked:
        headers.append(("transfer-encoding", "chunked"))
    elif head.content_length is not None:
        headers.append(("content-length", str(head.content_length)))
    if action.mirrors:
        for mirror in action.mirrors:
            if chance(mirror.percent, conn.rng):
                conn.spawn(
                    _mirror(conn, snapshot, mirror.cluster, head, body, target, headers, authority)
                )
    forward = Forward(conn, head, body, cluster, dest, action, target, headers, client_ip, origin)
    conn.forward = forward
    forward.start()
    return None


_UUID_KEEP = ~(0xF << 76) & ~(0x3 << 62)
_UUID_V4 = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


def request_id(bits: int) -> str:
    """A version-4 UUID from the connection's PRNG (``uuid.uuid4()`` reads the OS's entropy
    per call: an x-request-id needs uniqueness, not secrecy)."""
    h = (bits & _UUID_KEEP | _UUID_V4).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _mirror(
    conn: DownstreamHttp,
    snapshot: Snapshot,
    cluster_name: str,
    head: RequestHead,
    body: RequestBody,
    target: str,
    headers: Headers,
    authority: str,
) -> None:
    """Fire and forget: a copy of the request with ``-shadow`` appended to its host."""
    cluster = snapshot.clusters.get(cluster_name)
    if cluster is None:
        return
    with contextlib.suppress(Exception):
        while not body.done:
            await asyncio.sleep(0.01)
        if not body.replayable:
            return
        shadow = [(n, shadow_authority(authority)) if n == "host" else (n, v) for n, v in headers]
        upstream, _ = await conn.pool.acquire(cluster, conn.peer_ip, ())
        sink = _DiscardExchange()
        upstream.start(sink, head.method)
        upstream.write(serialize_request(head.method, target, shadow, 1))
        for chunk in body.replay or ():
            upstream.write(frame(chunk, head.chunked))
        if head.chunked:
            upstream.write(b"0\r\n\r\n")
        ok = await asyncio.wait_for(sink.done, 30)
        conn.pool.release(cluster, upstream, reusable=ok)


class _DiscardExchange:
    def __init__(self) -> None:
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_response_head(self, head: ResponseHead) -> None:
        pass

    def on_response_body(self, data: bytes) -> None:
        pass

    def on_response_end(self, rest: bytes) -> None:
        if not self.done.done():
            self.done.set_result(True)

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(False)

    def on_upstream_writable(self, writable: bool) -> None:
        pass

    def on_read_done(self) -> None:
        pass


def _passthrough_cluster(authority: str, default_port: int) -> Cluster:
    """ALLOW_ANY: an unknown host is reached directly, resolved by DNS (Istio's
    PassthroughCluster)."""
    from isthmus.dataplane.routing import split_host_port

    host, port = split_host_port(authority)
    number = int(port) if port else default_port
    return Cluster(
        name=f"PassthroughCluster|{host}:{number}",
        service=host,
        port=number,
        subset="",
        type="ORIGINAL_DST",
        endpoints=(Endpoint(host.strip("[]"), number, resolve=True),),
    )


def _passthrough(
    conn: DownstreamHttp, head: RequestHead, body: RequestBody, authority: str
) -> Outcome | None:
    cluster = _passthrough_cluster(authority, 80)
    dest = WeightedCluster(cluster.name, 100, 1.0)
    action = ForwardAction((dest,))
    target = f"{head.path}?{head.query}" if head.query else head.path
    conn.request_id = rid = request_id(conn.rng.getrandbits(128))
    headers, client_ip = upstream_request_headers(
        head.headers,
        peer_ip=conn.peer_ip,
        scheme="http",
        request_id=rid,
        trusted_hops=conn.settings.trusted_hops,
    )
    if head.chunked:
        headers.append(("transfer-encoding", "chunked"))
    elif head.content_length is not None:
        headers.append(("content-length", str(head.content_length)))
    forward = Forward(conn, head, body, cluster, dest, action, target, headers, client_ip, None)
    conn.forward = forward
    forward.start()
    return None


async def _tunnel(conn: DownstreamHttp, snapshot: Snapshot, head: RequestHead) -> Outcome:
    """CONNECT on the mesh port: a TCP tunnel to the service's endpoints (or, with ALLOW_ANY,
    to the named host)."""
    from isthmus.dataplane.relay import relay_transport_to_socket
    from isthmus.dataplane.upstream import UpstreamError, connect_upstream

    assert conn.mesh is not None
    authority = (head.host or head.target).lower()
    mesh = snapshot.mesh
    dests = mesh.tcp.get(authority) if mesh is not None else None
    cluster: Cluster | None
    if dests:
        cluster = snapshot.clusters.get(pick_weighted(dests, conn.rng).cluster)
    elif conn.mesh.allow_any:
        cluster = _passthrough_cluster(authority, 443)
    else:
        return _reply(conn, lr.BLACKHOLE, head)
    if cluster is None:
        return _reply(conn, lr.NO_CLUSTER, head)
    try:
        upstream = await connect_upstream(cluster, conn.pool.states, conn.peer_ip)
    except UpstreamError as exc:
        reply = lr.NO_HEALTHY_UPSTREAM
        if isinstance(exc, UpstreamConnectError):
            reply = lr.connect_failure(exc.local_reply_body)
        return _reply(conn, reply, head)
    conn.write(b"HTTP/1.1 200 Connection established\r\nserver: istio-envoy\r\n\r\n")
    conn.note_response(200, "")
    conn.reading_paused = False  # the relay owns reading from here on
    conn.writes.flush()  # the relay writes to the transport itself
    with upstream:
        sock = upstream.sock
        await relay_transport_to_socket(conn.transport, sock, to_upstream=conn.upgrade_rest)
    return Outcome(False, upgraded=True)


def route_table_of(snapshot: Snapshot, listener: str, chain: str) -> HttpConnectionManager | None:
    found = snapshot.listener(listener)
    if found is None:
        return None
    for fc in found.filter_chains:
        if fc.name == chain and isinstance(fc.application, HttpConnectionManager):
            return fc.application
    return None
