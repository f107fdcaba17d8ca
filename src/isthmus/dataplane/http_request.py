"""One HTTP request at the gateway: route it on the snapshot read at its headers, then answer
locally (redirect, direct response, CORS preflight, fault, no route) or forward it upstream
with Istio's retry, timeout, header and mirror policies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from isthmus.dataplane import local_reply as lr
from isthmus.dataplane.http_exchange import RequestBody, ResponseRelay
from isthmus.dataplane.http_headers import (
    Headers,
    add_trace,
    apply_ops,
    downstream_response_headers,
    header_value,
    upstream_request_headers,
)
from isthmus.dataplane.routing import (
    chance,
    cors_origin_allowed,
    cors_preflight_headers,
    cors_response_headers,
    https_redirect_location,
    pick_weighted,
    redirect_location,
    rewrite_path,
    shadow_authority,
)
from isthmus.dataplane.upstream import NoHealthyUpstream, UpstreamConnectError, UpstreamOverflow
from isthmus.proto.http1 import ProtocolError, RequestHead, ResponseHead
from isthmus.snapshot.match import RequestView
from isthmus.snapshot.simulate import select_route
from isthmus.snapshot.types import (
    Cluster,
    DirectResponseAction,
    Endpoint,
    ForwardAction,
    HttpConnectionManager,
    RedirectAction,
    RetryPolicy,
    Route,
    Snapshot,
    WeightedCluster,
)

if TYPE_CHECKING:
    from isthmus.dataplane.http_proxy import DownstreamHttp

NO_BODY_STATUSES = frozenset({204, 304})


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


async def handle_request(conn: DownstreamHttp, head: RequestHead, body: RequestBody) -> Outcome:
    snapshot = conn.gateway.snapshot  # read once, at the request's headers
    hcm = conn.route_table(snapshot)
    if head.method == "CONNECT":
        if conn.mesh is None:
            return _reply(conn, lr.CONNECT_REFUSED, head)
        return await _tunnel(conn, snapshot, head)
    if hcm is None:
        return _reply(conn, lr.NO_ROUTE, head)
    authority = head.host or ""
    vhost = hcm.route_config.find_virtual_host(authority)
    if vhost is None:
        if conn.mesh is not None and conn.mesh.allow_any:
            return await _passthrough(conn, head, body, authority)
        return _reply(conn, lr.NO_ROUTE if conn.mesh is None else lr.BLACKHOLE, head)
    if vhost.require_tls and conn.scheme == "http":
        location = https_redirect_location(authority, head.path, head.query)
        return _send(conn, head, 301, extra=[("location", location)], content_type=None)
    view = RequestView(
        path=head.path,
        method=head.method,
        authority=authority,
        scheme=conn.scheme,
        port=conn.gateway_port,
        headers=dict(head.headers),
        query=dict(parse_qsl(head.query, keep_blank_values=True)) if head.query else {},
    )
    route = select_route(vhost, view)
    if route is None:
        return _reply(conn, lr.NO_ROUTE, head)
    conn.note_route(route)
    action = route.action
    if isinstance(action, RedirectAction):
        location = redirect_location(
            action, conn.scheme, authority, head.path, head.query, conn.gateway_port
        )
        return _send(conn, head, action.code, extra=[("location", location)], content_type=None)
    if isinstance(action, DirectResponseAction):
        return _send(conn, head, action.status, action.body)
    assert isinstance(action, ForwardAction)
    origin = view.headers.get("origin")
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
            await asyncio.sleep(fault.delay)
        if fault.abort_status is not None and chance(fault.abort_percent, conn.rng):
            return _reply(conn, lr.fault_abort(fault.abort_status), head)
    return await _forward(conn, snapshot, head, body, route, action, authority, origin)


async def _forward(
    conn: DownstreamHttp,
    snapshot: Snapshot,
    head: RequestHead,
    body: RequestBody,
    route: Route,
    action: ForwardAction,
    authority: str,
    origin: str | None,
) -> Outcome:
    dest = pick_weighted(action.clusters, conn.rng)
    cluster = snapshot.clusters.get(dest.cluster)
    if cluster is None:
        return _reply(conn, lr.NO_CLUSTER, head)
    path = head.path
    if action.rewrite is not None:
        path = rewrite_path(action.rewrite, route.match, path)
        if action.rewrite.authority:
            authority = action.rewrite.authority
    target = f"{path}?{head.query}" if head.query else path
    upgrade = head.upgrade if head.upgrade and head.upgrade.lower() != "h2c" else None
    headers, client_ip = upstream_request_headers(
        head.headers,
        peer_ip=conn.peer_ip,
        scheme=conn.scheme,
        request_id=request_id(conn.rng.getrandbits(128)),
        trusted_hops=conn.settings.trusted_hops,
        upgrade=upgrade,
    )
    headers = [(n, authority) if n == "host" else (n, v) for n, v in headers]
    if conn.settings.tracing is not None:
        add_trace(headers, conn.settings.tracing, conn.rng.getrandbits(192))
    headers = apply_ops(apply_ops(headers, action.request_headers), dest.request_headers)
    if head.chunked:
        headers.append(("transfer-encoding", "chunked"))
    elif head.content_length is not None:
        headers.append(("content-length", str(head.content_length)))
    for mirror in action.mirrors:
        if chance(mirror.percent, conn.rng):
            conn.spawn(
                _mirror(conn, snapshot, mirror.cluster, head, body, target, headers, authority)
            )
    return await _attempts(
        conn, head, body, cluster, dest, action, target, headers, client_ip, origin
    )


def request_id(bits: int) -> str:
    """A version-4 UUID from the connection's PRNG (``uuid.uuid4()`` reads the OS's entropy
    per call: an x-request-id needs uniqueness, not secrecy)."""
    bits = (bits & ~(0xF << 76) | (0x4 << 76)) & ~(0x3 << 62) | (0x2 << 62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _retriable_status(policy: RetryPolicy, status: int) -> bool:
    on = policy.retry_on
    return (
        ("5xx" in on and status >= 500)
        or ("gateway-error" in on and status in (502, 503, 504))
        or ("retriable-status-codes" in on and status in policy.retriable_status_codes)
    )


def _retriable_reset(policy: RetryPolicy) -> bool:
    on = policy.retry_on
    return "5xx" in on or "gateway-error" in on or "reset" in on


def _retriable_connect(policy: RetryPolicy) -> bool:
    on = policy.retry_on
    return "connect-failure" in on or "5xx" in on or "gateway-error" in on


def _serialize_request(method: str, target: str, headers: Headers, attempt: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend(f"{n}: {v}" for n, v in headers)
    lines.append(f"x-envoy-attempt-count: {attempt}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _attempts(
    conn: DownstreamHttp,
    head: RequestHead,
    body: RequestBody,
    cluster: Cluster,
    dest: WeightedCluster,
    action: ForwardAction,
    target: str,
    headers: Headers,
    client_ip: str,
    origin: str | None,
) -> Outcome:
    policy = action.retries
    retries_left = policy.attempts
    tried: set[str] = set()
    started = time.monotonic()
    deadline = started + action.timeout if action.timeout else None
    attempt = 0
    last_failure: lr.LocalReply | None = None
    stale_retry = True
    while True:
        attempt += 1
        try:
            upstream, reused = await conn.pool.acquire(cluster, client_ip, tried)
        except UpstreamOverflow:
            return _reply(conn, lr.OVERFLOW, head)
        except NoHealthyUpstream:
            return _reply(conn, last_failure or lr.NO_HEALTHY_UPSTREAM, head)
        except UpstreamConnectError as exc:
            tried.update(f.endpoint for f in exc.failures)
            last_failure = lr.connect_failure(exc.local_reply_body)
            if retries_left > 0 and _retriable_connect(policy) and body.replayable:
                retries_left -= 1
                continue
            return _reply(conn, last_failure, head)
        tried.add(upstream.endpoint.key)
        conn.note_upstream(cluster.name, upstream.endpoint.key)
        relay = ResponseRelay(upstream, conn.transport, conn.loop)
        upstream.start(relay, head.method)
        conn.upstream = upstream
        sent_at = time.monotonic()
        upstream.write(_serialize_request(head.method, target, headers, attempt))
        sender: asyncio.Task[None] | None = None
        if attempt > 1 or body.done:
            for chunk in body.replay or ():
                upstream.write(_frame(chunk, head.chunked))
            if body.done and head.chunked:
                upstream.write(b"0\r\n\r\n")
        if not body.done:
            sender = conn.loop.create_task(_send_body(body, upstream, relay, head.chunked))
        timeout = policy.per_try_timeout or conn.settings.stream_idle_timeout
        if deadline is not None:
            remaining = max(0.0, deadline - time.monotonic())
            timeout = remaining if timeout is None else min(timeout, remaining)
        try:
            response = await _head_within(conn.loop, relay.head_future, timeout)
        except TimeoutError:
            _abandon(conn, cluster, upstream, sender)
            if deadline is not None and time.monotonic() >= deadline:
                return _reply(conn, lr.UPSTREAM_TIMEOUT, head)
            if retries_left > 0 and _retriable_reset(policy) and body.replayable:
                retries_left -= 1
                continue
            return _reply(conn, lr.UPSTREAM_TIMEOUT, head)
        except (ConnectionError, ProtocolError, OSError) as exc:
            _abandon(conn, cluster, upstream, sender)
            if reused and not upstream.received_any and stale_retry and body.replayable:
                stale_retry = False  # a keep-alive connection the upstream had closed
                tried.discard(upstream.endpoint.key)
                attempt -= 1
                continue
            last_failure = lr.upstream_reset(
                "protocol error" if isinstance(exc, ProtocolError) else "connection termination"
            )
            if retries_left > 0 and _retriable_reset(policy) and body.replayable:
                retries_left -= 1
                continue
            return _reply(conn, last_failure, head)
        upstream.state.http_status(upstream.endpoint, response.status)
        if (
            retries_left > 0
            and _retriable_status(policy, response.status)
            and body.replayable
            and body.done
        ):
            retries_left -= 1
            _abandon(conn, cluster, upstream, sender)
            continue
        elapsed_ms = int((time.monotonic() - sent_at) * 1000)
        return await _respond(
            conn, head, cluster, dest, action, upstream, relay, response, sender, elapsed_ms, origin
        )


async def _head_within(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[ResponseHead], timeout: float | None
) -> ResponseHead:
    """The response head, or TimeoutError: one timer, no Task (``wait_for`` + ``shield``
    cost two extra tasks per request in Python 3.11)."""
    if future.done() or timeout is None:
        return await future
    timer = loop.call_later(timeout, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[ResponseHead]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _frame(chunk: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk


async def _send_body(
    body: RequestBody, upstream: object, relay: ResponseRelay, chunked: bool
) -> None:
    from isthmus.dataplane.http_upstream import UpstreamHttp

    assert isinstance(upstream, UpstreamHttp)
    while (chunk := await body.read()) is not None:
        if upstream.closed:
            return
        upstream.write(_frame(chunk, chunked))
        if not relay.writable.is_set():
            await relay.writable.wait()
    if chunked and not upstream.closed and not body.failed:
        upstream.write(b"0\r\n\r\n")


def _abandon(
    conn: DownstreamHttp, cluster: Cluster, upstream: object, sender: asyncio.Task[None] | None
) -> None:
    from isthmus.dataplane.http_upstream import UpstreamHttp

    assert isinstance(upstream, UpstreamHttp)
    if sender is not None:
        sender.cancel()
    upstream.exchange = None
    upstream.abort()
    conn.pool.release(cluster, upstream, reusable=False)
    conn.upstream = None


async def _respond(
    conn: DownstreamHttp,
    head: RequestHead,
    cluster: Cluster,
    dest: WeightedCluster,
    action: ForwardAction,
    upstream: object,
    relay: ResponseRelay,
    response: ResponseHead,
    sender: asyncio.Task[None] | None,
    elapsed_ms: int,
    origin: str | None,
) -> Outcome:
    from isthmus.dataplane.http_upstream import UpstreamHttp

    assert isinstance(upstream, UpstreamHttp)
    upgraded = response.status == 101
    headers = downstream_response_headers(
        response.headers, upstream_ms=elapsed_ms, upgrade=upgraded
    )
    headers = apply_ops(apply_ops(headers, action.response_headers), dest.response_headers)
    if action.cors is not None and origin is not None and cors_origin_allowed(action.cors, origin):
        headers.extend(cors_response_headers(action.cors, origin))
    has_body = head.method != "HEAD" and response.status not in NO_BODY_STATUSES and not upgraded
    # A refused upgrade ends the connection: the client may already have sent the new protocol.
    keep = head.keep_alive and not conn.draining and not upgraded and head.upgrade is None
    chunked = False
    if response.content_length is not None:
        headers.append(("content-length", str(response.content_length)))
    elif has_body:
        if head.version == "1.1":
            chunked = True
            headers.append(("transfer-encoding", "chunked"))
        else:
            keep = False  # an HTTP/1.0 client reads to close
    elif head.method == "HEAD":
        cl = header_value(response.headers, "content-length")
        if cl is not None:
            headers.append(("content-length", cl))
    if not keep and not upgraded:
        headers.append(("connection", "close"))
    reason = lr.REASONS.get(response.status) or response.reason or "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines.extend(f"{n}: {v}" for n, v in headers)
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    conn.note_response(response.status, "")
    if upgraded:
        conn.write(head_bytes)
        if sender is not None:
            sender.cancel()
        upstream.state.release(upstream.endpoint)  # the connection leaves the pool for good
        conn.upstream = None
        await conn.upgrade(upstream, relay.rest + b"".join(relay.pending))
        return Outcome(False, upgraded=True)
    relay.commit(head_bytes, chunked, has_body)
    conn.bytes_sent += len(head_bytes)
    try:
        complete = await relay.done
    finally:
        conn.upstream = None
        conn.bytes_sent += relay.bytes_out
    body_sent = sender is None or sender.done()
    if sender is not None and not sender.done():
        sender.cancel()
    parser = upstream.parser  # reusable: keep-alive *and* no stray bytes after the response
    reusable = complete and body_sent and parser is not None and parser.reusable
    conn.pool.release(cluster, upstream, reusable)
    if not complete:
        return Outcome(False)  # the upstream reset mid-body: the client must see it end badly
    return Outcome(keep)


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
        upstream.write(_serialize_request(head.method, target, shadow, 1))
        for chunk in body.replay or ():
            upstream.write(_frame(chunk, head.chunked))
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


async def _passthrough(
    conn: DownstreamHttp, head: RequestHead, body: RequestBody, authority: str
) -> Outcome:
    cluster = _passthrough_cluster(authority, 80)
    dest = WeightedCluster(cluster.name, 100, 1.0)
    action = ForwardAction((dest,))
    target = f"{head.path}?{head.query}" if head.query else head.path
    headers, client_ip = upstream_request_headers(
        head.headers,
        peer_ip=conn.peer_ip,
        scheme="http",
        request_id=request_id(conn.rng.getrandbits(128)),
        trusted_hops=conn.settings.trusted_hops,
    )
    if head.chunked:
        headers.append(("transfer-encoding", "chunked"))
    elif head.content_length is not None:
        headers.append(("content-length", str(head.content_length)))
    return await _attempts(
        conn, head, body, cluster, dest, action, target, headers, client_ip, None
    )


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
