"""Request checks off the common path: target forms, Host, version, llhttp's errors."""

from __future__ import annotations

import re

from isthmus.proto.http1_events import NAMES_MAX, ProtocolError
from isthmus.proto.http1_path import normalize_path

_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)", re.DOTALL)
#: What nghttp2 (and so Envoy) accepts in an authority: RFC 3986 reg-name, IP literal, port.
valid_host = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]*").fullmatch

#: Host values already found valid (bounded like ``NAMES``): most traffic names few hosts, so
#: the check is a set lookup.
VALID_HOSTS: set[str] = set()


def check_host(host: str) -> None:
    if not valid_host(host):
        raise ProtocolError(400, "invalid Host header", "http.invalid_authority")
    if len(VALID_HOSTS) < NAMES_MAX:
        VALID_HOSTS.add(host)


def check_version(version: str, chunked: bool, accept_http_10: bool) -> None:
    """Refusals for a request that is not HTTP/1.1."""
    if version != "1.0":
        raise ProtocolError(400, f"unsupported HTTP version {version}", "http1.codec_error")
    if not accept_http_10:
        raise ProtocolError(426, "HTTP/1.0 is not accepted", "low_version")
    if chunked:
        raise ProtocolError(
            400, "chunked encoding in an HTTP/1.0 request", "http1.invalid_transfer_encoding"
        )


#: llhttp's reasons mapped to Envoy's response code details; anything else is a codec error.
_DETAILS = {
    "Transfer-Encoding can't be present with Content-Length": "http1.content_length_not_allowed",
    "Content-Length can't be present with Transfer-Encoding": "http1.content_length_not_allowed",
    "Request has invalid `Transfer-Encoding`": "http1.invalid_transfer_encoding",
    "Invalid `Transfer-Encoding` header value": "http1.invalid_transfer_encoding",
    "Invalid header value char": "http1.invalid_characters",
    "Invalid header field char": "http1.invalid_characters",
    "Invalid header token": "http1.invalid_characters",
}


def codec_error(exc: Exception, invalid_url: bool) -> tuple[int, str]:
    """The status and details for a request llhttp refused."""
    if invalid_url:
        return 400, "http1.invalid_url"
    return 400, _DETAILS.get(str(exc), "http1.codec_error")


def split_target(
    method: str, target: str, host: str | None, merge_slashes: bool
) -> tuple[str, str, str | None]:
    """``(path, query, host)`` for a target that is not a plain ``/path[?query]``.

    Absolute-form (``http://a.example/x``) must name the same authority as Host, if any; its
    path is then used as an origin-form one. Authority-form is CONNECT's, asterisk-form
    ``OPTIONS``'s. A fragment is refused in every form: clients never send one.
    """
    if "#" in target:
        raise ProtocolError(400, "fragment in request target", "http1.invalid_url")
    if method == "CONNECT":
        return "", "", target
    if target == "*" and method == "OPTIONS":
        return "*", "", host
    match = _ABSOLUTE.fullmatch(target)
    if match is None or match[1].lower() not in ("http", "https"):
        raise ProtocolError(400, "invalid request target", "http1.invalid_url")
    authority, rest = match[2], match[3]
    if not authority or "@" in authority or not valid_host(authority):
        raise ProtocolError(400, "invalid authority in request target", "http1.invalid_url")
    if host is not None and host.lower() != authority.lower():
        raise ProtocolError(
            400, "request target authority differs from Host", "http.invalid_authority"
        )
    if rest[:1] != "/":
        rest = "/" + rest
    path, _, query = rest.partition("?")
    normalized = normalize_path(path, merge_slashes)
    if normalized is None:
        raise ProtocolError(400, "invalid path", "path_normalization_failed")
    return normalized, query, authority
