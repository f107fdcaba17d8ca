"""One request's trip upstream — every attempt, the response relay — driven by callbacks.

The common request (no body to stream, an idle pooled connection to the chosen endpoint) runs
with no Task and no Future: the parser's events pick the route, :meth:`Forward.start` writes
the request on a pooled connection, and the upstream connection's callbacks write the
response and finish the request.  Only what must wait runs as a Task: opening a new upstream
connection (or waiting at ``maxConnections``) and streaming a request body with backpressure.

Istio's retry, timeout and outlier-detection policies are applied as they were by a coroutine:
a connect failure, a reset before the response head, a per-try timeout or a retriable status
start another attempt (on another endpoint when there is one) while the body can be replayed.
The per-try timeout is the downstream connection's one timer, not a timer per attempt.

The response is written once per upstream read: the head, whatever body arrived with it and,
when complete, the last chunk go out in one ``write``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from isthmus.dataplane import local_reply as lr
from isthmus.dataplane.http_exchange import RequestBody
from isthmus.dataplane.http_headers import (
    RESPONSE_DROP,
    RESPONSE_DROP_LENGTH,
    SERVER,
    Headers,
    encode_fields,
    header_value,
    response_fields,
)
from isthmus.dataplane.http_upstream import UpstreamHttp
from isthmus.dataplane.routing import cors_origin_allowed, cors_response_headers
from isthmus.dataplane.upstream import NoHealthyUpstream, UpstreamConnectError, UpstreamOverflow
from isthmus.proto.http1 import LAST_CHUNK, ProtocolError, RequestHead, ResponseHead
from isthmus.snapshot.types import Cluster, ForwardAction, RetryPolicy, WeightedCluster

if TYPE_CHECKING:
    from isthmus.dataplane.balancer import EndpointState
    from isthmus.dataplane.http_proxy import DownstreamHttp

NO_BODY_STATUSES = frozenset({204, 304})
#: The fields the proxy adds to every response (Envoy's), and their common start.
OWN_FIELDS = frozenset(("server", "x-envoy-upstream-service-time"))
SERVICE_TIME = f"\r\nserver: {SERVER}\r\nx-envoy-upstream-service-time: ".encode()
STATUS_LINES = {status: f"HTTP/1.1 {status} {text}".encode() for status, text in lr.REASONS.items()}


def downstream_extra(response: ResponseHead, elapsed_ms: int, upgraded: bool) -> Headers:
    """The fields the proxy adds to a response: ``server``, the upstream service time and,
    after a 101, the upgrade's ``connection``/``upgrade`` pair."""
    extra: Headers = []
    if upgraded:
        upgrade = header_value(response.headers, "upgrade")
        if upgrade is not None:
            extra += (("connection", "upgrade"), ("upgrade", upgrade))
    extra += (("server", SERVER), ("x-envoy-upstream-service-time", str(elapsed_ms)))
    return extra


def _retriable_reset(policy: RetryPolicy) -> bool:
    on = policy.retry_on
    return "5xx" in on or "gateway-error" in on or "reset" in on


def _retriable_connect(policy: RetryPolicy) -> bool:
    on = policy.retry_on
    return "connect-failure" in on or "5xx" in on or "gateway-error" in on


def serialize_request(method: str, target: str, headers: Headers, attempt: int) -> bytes:
    fields = "".join([f"{n}: {v}\r\n" for n, v in headers])  # the fastest way measured
    return (
        f"{method} {target} HTTP/1.1\r\n{fields}x-envoy-attempt-count: {attempt}\r\n\r\n"
    ).encode("latin-1")


def frame(chunk: bytes, chunked: bool) -> bytes:
    return b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk


class Forward:
    """The :class:`~isthmus.dataplane.http_upstream.Exchange` of one request, all attempts.

    Ends by calling ``conn.finish`` exactly once (or not at all when the downstream connection
    is lost first: then :meth:`abort` undoes what is held).
    """

    # Per-attempt and rarely changed state starts as these class attributes: a request sets
    # only what differs (a dozen stores instead of thirty).
    attempt = 0
    last_failure: lr.LocalReply | None = None
    stale_retry = True
    upstream: UpstreamHttp | None = None
    reused = False
    connecting: asyncio.Task[None] | None = None
    sender: asyncio.Task[None] | None = None
    sent_at = 0.0
    response: ResponseHead | None = None
    committed = False
    chunked_out = False
    has_body = True
    keep = False
    upgraded = False
    out: list[bytes] | None = None
    bytes_out = 0
    finished = False
    _writable: asyncio.Event | None = None

    def __init__(
        self,
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
    ) -> None:
        self.conn = conn
        self.head = head
        self.body = body
        self.cluster = cluster
        self.dest = dest
        self.action = action
        self.target = target
        self.headers = headers
        self.client_ip = client_ip
        self.origin = origin
        self.policy = policy = action.retries
        self.retries_left = policy.attempts
        self.tried: set[str] = set()
        self.deadline = time.monotonic() + action.timeout if action.timeout else None

    # --- attempts -------------------------------------------------------------------------------
    def start(self) -> None:
        self.attempt += 1
        conn = self.conn
        try:
            found = conn.pool.take(self.cluster, self.client_ip, self.tried)
        except NoHealthyUpstream:
            self._reply(self.last_failure or lr.NO_HEALTHY_UPSTREAM)
            return
        if isinstance(found, UpstreamHttp):
            self._send(found, True)
        else:
            task = conn.loop.create_task(self._connect(found))
            self.connecting = task
            task.add_done_callback(self._connected)

    async def _connect(self, chosen: EndpointState) -> None:
        """No idle connection to ``chosen``: open one (or wait at ``maxConnections``)."""
        try:
            upstream, reused = await self.conn.pool.acquire(
                self.cluster, self.client_ip, self.tried, first=chosen
            )
        except UpstreamOverflow:
            self.connecting = None
            self._reply(lr.OVERFLOW)
            return
        except NoHealthyUpstream:
            self.connecting = None
            self._reply(self.last_failure or lr.NO_HEALTHY_UPSTREAM)
            return
        except UpstreamConnectError as exc:
            self.connecting = None
            self.tried.update(f.endpoint for f in exc.failures)
            self.last_failure = lr.connect_failure(exc.local_reply_body)
            if self.retries_left > 0 and _retriable_connect(self.policy) and self.body.replayable:
                self.retries_left -= 1
                self.start()
                return
            self._reply(self.last_failure)
            return
        self.connecting = None
        self._send(upstream, reused)

    def _connected(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.conn.failed(exc)

    def _send(self, upstream: UpstreamHttp, reused: bool) -> None:
        conn = self.conn
        head = self.head
        body = self.body
        key = upstream.endpoint.key
        self.tried.add(key)
        conn.last_cluster = self.cluster.name
        conn.last_upstream = key
        self.upstream = upstream
        self.reused = reused
        upstream.start(self, head.method)
        conn.upstream = upstream
        now = time.monotonic()
        self.sent_at = now
        data = serialize_request(head.method, self.target, self.headers, self.attempt)
        if self.attempt > 1 or body.done:
            replay = body.replay
            if replay or (body.done and head.chunked):
                parts = [data]
                parts.extend(frame(chunk, head.chunked) for chunk in replay or ())
                if body.done and head.chunked:
                    parts.append(LAST_CHUNK)
                data = b"".join(parts)
        upstream.write(data)
        if not body.done:
            self.sender = conn.loop.create_task(_send_body(body, upstream, self, head.chunked))
        per_try = self.policy.per_try_timeout
        if not per_try and self.deadline is None:  # the common case: the shared timer
            conn.await_response(now + conn.settings.stream_idle_timeout, stream_idle=True)
            return
        timeout = per_try or conn.settings.stream_idle_timeout
        if self.deadline is not None:
            timeout = min(timeout, max(0.0, self.deadline - now))
        conn.await_response(now + timeout)

    def _abandon(self) -> None:
        """Give up this attempt's connection: it may still be sending us a response."""
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.cancel()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.exchange = None
            upstream.abort()
            self.conn.pool.release(self.cluster, upstream, reusable=False)
        self.conn.upstream = None

    def on_timeout(self) -> None:
        """The per-try (or route) timeout passed before the response head."""
        self._abandon()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._reply(lr.UPSTREAM_TIMEOUT)
        elif self.retries_left > 0 and _retriable_reset(self.policy) and self.body.replayable:
            self.retries_left -= 1
            self.start()
        else:
            self._reply(lr.UPSTREAM_TIMEOUT)

    def _reset_before_head(self, exc: BaseException | None) -> None:
        upstream = self.upstream
        assert upstream is not None
        fresh = not upstream.received_any
        key = upstream.endpoint.key
        self._abandon()
        body = self.body
        if self.reused and fresh and self.stale_retry and body.replayable:
            self.stale_retry = False  # a keep-alive connection the upstream had closed
            self.tried.discard(key)
            self.attempt -= 1
            self.start()
            return
        self.last_failure = lr.upstream_reset(
            "protocol error" if isinstance(exc, ProtocolError) else "connection termination"
        )
        if self.retries_left > 0 and _retriable_reset(self.policy) and body.replayable:
            self.retries_left -= 1
            self.start()
            return
        self._reply(self.last_failure)

    def _reply(self, reply: lr.LocalReply) -> None:
        conn = self.conn
        keep = self.head.keep_alive and not conn.draining
        conn.write(lr.render_reply(reply, keep_alive=keep, head_only=self.head.method == "HEAD"))
        conn.note_response(reply.status, reply.flag)
        self.finished = True
        conn.finish(keep)

    # --- the upstream connection's callbacks ----------------------------------------------------
    def on_response_head(self, response: ResponseHead) -> None:
        status = response.status
        if 100 <= status < 200 and status != 101:
            return  # interim responses are not passed on
        upstream = self.upstream
        assert upstream is not None
        self.conn.response_started()
        upstream.state.http_status(upstream.endpoint, status)
        body = self.body
        if (
            self.retries_left > 0
            and status in self.policy.retry_statuses
            and body.replayable
            and body.done
        ):
            self.retries_left -= 1
            self._abandon()
            self.start()
            return
        self.response = response
        self._commit(response, int((time.monotonic() - self.sent_at) * 1000))

    def on_response_body(self, data: bytes) -> None:
        if not data or not self.has_body:
            return
        self.bytes_out += len(data)
        piece = b"%x\r\n%b\r\n" % (len(data), data) if self.chunked_out else data
        out = self.out
        if out is None:
            self.out = [piece]
        else:
            out.append(piece)

    def on_response_end(self, rest: bytes) -> None:
        if self.upgraded:
            self._upgrade(rest)
            return
        if self.chunked_out:
            self.on_read_done(LAST_CHUNK)
        else:
            self.on_read_done()
        self._complete(True)

    def on_read_done(self, last: bytes = b"") -> None:
        """Everything one upstream read produced is in: write it to the client at once."""
        out = self.out
        if out is None:
            if last:
                self.conn.writes.write(self.conn.transport, last)
            return
        self.out = None
        if last:
            out.append(last)
        conn = self.conn
        conn.writes.write(conn.transport, out[0] if len(out) == 1 else b"".join(out))

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        if self.response is None:
            self._reset_before_head(exc)
            return
        self.on_read_done()
        self._complete(False)  # the upstream reset mid-body: the client must see it end badly

    @property
    def writable(self) -> asyncio.Event:
        if self._writable is None:
            self._writable = asyncio.Event()
            self._writable.set()
        return self._writable

    def on_upstream_writable(self, writable: bool) -> None:
        if writable:
            self.writable.set()
        else:
            self.writable.clear()

    # --- the response ---------------------------------------------------------------------------
    def _commit(self, response: ResponseHead, elapsed_ms: int) -> None:
        """No more retries: the response head goes to the client (with what follows it).

        The upstream's header block is passed on as sent, minus the fields the proxy drops
        (hop-by-hop, ``server``, the route's ``remove``/``set``), cut out in one pass; only
        the proxy's own fields are formatted here."""
        conn = self.conn
        head = self.head
        action = self.action
        status = response.status
        upgraded = status == 101
        ops, dest_ops = action.response_headers, self.dest.response_headers
        drop = RESPONSE_DROP if response.content_length is not None else RESPONSE_DROP_LENGTH
        origin, cors = self.origin, action.cors
        if dest_ops or upgraded or (cors is not None and origin is not None):
            drop = drop | ops.drop | dest_ops.drop
            extra = downstream_extra(response, elapsed_ms, upgraded)
            extra = dest_ops.apply(ops.apply(extra))
            if cors is not None and origin is not None and cors_origin_allowed(cors, origin):
                extra.extend(cors_response_headers(cors, origin))
            tail = encode_fields(extra)
        elif ops:
            if ops.drop:
                drop = drop | ops.drop
            if ops.drop.isdisjoint(OWN_FIELDS):  # the usual case: our own fields stay
                tail = b"%b%d%b" % (SERVICE_TIME, elapsed_ms, ops.fields)
            else:
                tail = encode_fields(ops.apply(downstream_extra(response, elapsed_ms, False)))
        else:
            tail = b"%b%d" % (SERVICE_TIME, elapsed_ms)
        fields = response_fields(response.raw, drop, response.connection)
        has_body = head.method != "HEAD" and status not in NO_BODY_STATUSES and not upgraded
        # A refused upgrade ends the connection: the client may already have sent the new
        # protocol.
        keep = head.keep_alive and not conn.draining and not upgraded and head.upgrade is None
        chunked = False
        if response.content_length is None:
            if has_body:
                if head.version == "1.1":
                    chunked = True
                    tail += b"\r\ntransfer-encoding: chunked"
                else:
                    keep = False  # an HTTP/1.0 client reads to close
            elif head.method == "HEAD":
                cl = header_value(response.headers, "content-length")
                if cl is not None:
                    tail += b"\r\ncontent-length: " + cl.encode("latin-1")
        if not keep and not upgraded:
            tail += b"\r\nconnection: close"
        status_line = STATUS_LINES.get(status)
        if status_line is None:
            reason = lr.REASONS.get(status) or response.reason or "Unknown"
            status_line = f"HTTP/1.1 {status} {reason}".encode("latin-1")
        head_bytes = b"%b%b%b\r\n\r\n" % (status_line, fields, tail)
        conn.note_response(status, "")
        self.committed = True
        self.upgraded = upgraded
        self.keep = keep
        self.has_body = has_body
        self.chunked_out = chunked
        self.out = [head_bytes]
        conn.bytes_sent += len(head_bytes)

    def _complete(self, ok: bool) -> None:
        conn = self.conn
        upstream, self.upstream = self.upstream, None
        conn.upstream = None
        conn.bytes_sent += self.bytes_out
        sender, self.sender = self.sender, None
        body_sent = sender is None or sender.done()
        if sender is not None and not body_sent:
            sender.cancel()
        if upstream is not None:
            parser = upstream.parser  # reusable: keep-alive *and* no stray bytes after it
            reusable = ok and body_sent and parser is not None and parser.reusable
            conn.pool.release(self.cluster, upstream, reusable)
        self.finished = True
        conn.finish(self.keep if ok else False)

    def _upgrade(self, rest: bytes) -> None:
        """After a 101: the two connections become a byte relay (websocket and friends)."""
        conn = self.conn
        self.on_read_done()
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.cancel()
        upstream, self.upstream = self.upstream, None
        assert upstream is not None
        upstream.state.release(upstream.endpoint)  # the connection leaves the pool for good
        conn.upstream = None
        conn.upgrade(upstream, rest)
        self.finished = True
        conn.finish(False, upgraded=True)

    def abort(self) -> None:
        """The client is gone: drop whatever this request holds upstream."""
        if self.finished:
            return
        self.finished = True
        connecting, self.connecting = self.connecting, None
        if connecting is not None:
            connecting.cancel()
        self._abandon()


async def _send_body(
    body: RequestBody, upstream: UpstreamHttp, fwd: Forward, chunked: bool
) -> None:
    while (chunk := await body.read()) is not None:
        if upstream.closed:
            return
        upstream.write(frame(chunk, chunked))
        if not fwd.writable.is_set():
            await fwd.writable.wait()
    if chunked and not upstream.closed and not body.failed:
        upstream.write(LAST_CHUNK)
