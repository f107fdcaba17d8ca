"""Responses the gateway writes itself, with Envoy's statuses, bodies and response flags."""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.dataplane.http_headers import SERVER


@dataclass(frozen=True, slots=True)
class LocalReply:
    """``flag`` is Envoy's response flag (NR, UH, UF, UT, NC, UO, FI, ...)."""

    status: int
    body: bytes
    flag: str
    details: str
    content_type: str = "text/plain"


NO_ROUTE = LocalReply(404, b"", "NR", "route_not_found")
NO_HEALTHY_UPSTREAM = LocalReply(503, b"no healthy upstream", "UH", "no_healthy_upstream")
NO_CLUSTER = LocalReply(500, b"", "NC", "cluster_not_found")
UPSTREAM_TIMEOUT = LocalReply(504, b"upstream request timeout", "UT", "upstream_response_timeout")
OVERFLOW = LocalReply(
    503,
    b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
    "UO",
    "upstream_reset_before_response_started{overflow}",
)
CONNECT_REFUSED = LocalReply(403, b"", "NR", "connect_not_allowed")
# outboundTrafficPolicy REGISTRY_ONLY: unknown hosts go to Istio's BlackHoleCluster.
BLACKHOLE = LocalReply(502, b"", "NR", "blackhole_cluster")


def connect_failure(body: str) -> LocalReply:
    return LocalReply(
        503, body.encode(), "UF", "upstream_reset_before_response_started{connection_failure}"
    )


def upstream_reset(reason: str) -> LocalReply:
    body = f"upstream connect error or disconnect/reset before headers. reset reason: {reason}"
    return LocalReply(
        503, body.encode(), "UC", f"upstream_reset_before_response_started{{{reason}}}"
    )


def fault_abort(status: int) -> LocalReply:
    return LocalReply(status, b"fault filter abort", "FI", "fault_filter_abort")


def bad_request(status: int, details: str) -> LocalReply:
    return LocalReply(status, b"Bad Request" if status == 400 else b"", "DPE", details)


REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    418: "I'm a teapot",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def render(
    status: int,
    body: bytes,
    *,
    content_type: str | None = "text/plain",
    keep_alive: bool = True,
    extra: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response in one buffer."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    if body and content_type:
        lines.append(f"content-type: {content_type}")
    if status >= 200 and status not in (204, 304):
        lines.append(f"content-length: {len(body)}")
    for name, value in extra or ():
        lines.append(f"{name}: {value}")
    lines.append(f"server: {SERVER}")
    if not keep_alive:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only or not body else head + body


def render_reply(reply: LocalReply, *, keep_alive: bool, head_only: bool = False) -> bytes:
    return render(
        reply.status,
        reply.body,
        content_type=reply.content_type,
        keep_alive=keep_alive,
        head_only=head_only,
    )
