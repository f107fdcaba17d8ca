"""Per-request routing decisions that are not I/O: weighted picks, redirects, rewrites, CORS,
faults.  Each reads only the compiled snapshot objects."""

from __future__ import annotations

import random
from collections.abc import Sequence

from isthmus.snapshot.match import RouteMatch, StringMatcher
from isthmus.snapshot.types import Cors, RedirectAction, Rewrite, WeightedCluster


def pick_weighted(destinations: Sequence[WeightedCluster], rng: random.Random) -> WeightedCluster:
    """A destination by its share (weight/sum), like Envoy's weighted_clusters."""
    if len(destinations) == 1:
        return destinations[0]
    point = rng.random()
    for dest in destinations:
        point -= dest.share
        if point < 0:
            return dest
    return destinations[-1]


def split_host_port(authority: str) -> tuple[str, str]:
    """``example.com:8080`` → (``example.com``, ``8080``); IPv6 literals kept whole."""
    if authority.startswith("["):
        end = authority.find("]")
        return authority[: end + 1], authority[end + 2 :] if end >= 0 else ""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return authority, ""


def redirect_location(
    action: RedirectAction, scheme: str, authority: str, path: str, query: str, port: int
) -> str:
    """Envoy's redirect: swap scheme, host, port and path; keep the query unless the new path
    carries one."""
    host, host_port = split_host_port(authority)
    new_scheme = action.scheme or scheme
    if action.authority:
        host, host_port = split_host_port(action.authority)
    if action.port:
        host_port = str(action.port)
    elif action.derive_port == "FROM_REQUEST_PORT":
        host_port = str(port)
    elif action.scheme and action.scheme != scheme:
        host_port = ""  # a scheme change drops the old scheme's port
    if (new_scheme, host_port) in (("http", "80"), ("https", "443")):
        host_port = ""
    new_path = action.uri or path
    if "?" not in new_path and query:
        new_path = f"{new_path}?{query}"
    netloc = f"{host}:{host_port}" if host_port else host
    return f"{new_scheme}://{netloc}{new_path}"


def https_redirect_location(authority: str, path: str, query: str) -> str:
    host, _ = split_host_port(authority)
    return f"https://{host}{path}{'?' + query if query else ''}"


def rewrite_path(rewrite: Rewrite, match: RouteMatch, path: str) -> str:
    """Istio ``rewrite.uri`` is Envoy's prefix rewrite of what the route matched (``/`` when
    the match has no uri prefix/exact); ``uriRegexRewrite`` substitutes RE2 groups."""
    if rewrite.regex is not None and rewrite.regex_substitution is not None:
        result: str = rewrite.regex.sub(  # type: ignore[attr-defined]
            rewrite.regex_substitution, path
        )
        return result
    if rewrite.uri is None:
        return path
    uri = match.uri
    if uri is not None and uri.kind == "exact":
        return rewrite.uri
    prefix = uri.value if uri is not None and uri.kind == "prefix" else "/"
    if uri is not None and uri.kind == "regex":
        return rewrite.uri
    return rewrite.uri + path[len(prefix) :] if path.startswith(prefix) else rewrite.uri


def shadow_authority(authority: str) -> str:
    """Envoy's mirror host: ``-shadow`` appended to the host (before any port)."""
    host, port = split_host_port(authority)
    return f"{host}-shadow:{port}" if port else f"{host}-shadow"


def cors_origin_allowed(cors: Cors, origin: str) -> bool:
    for matcher in cors.allow_origins:
        assert isinstance(matcher, StringMatcher)
        if (matcher.kind == "exact" and matcher.value == "*") or matcher.matches(origin):
            return True
    return False


def cors_preflight_headers(cors: Cors, origin: str) -> list[tuple[str, str]]:
    out = [("access-control-allow-origin", origin)]
    if cors.allow_methods:
        out.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        out.append(("access-control-allow-headers", ",".join(cors.allow_headers)))
    if cors.max_age is not None:
        out.append(("access-control-max-age", str(int(cors.max_age))))
    if cors.allow_credentials:
        out.append(("access-control-allow-credentials", "true"))
    return out


def cors_response_headers(cors: Cors, origin: str) -> list[tuple[str, str]]:
    out = [("access-control-allow-origin", origin)]
    if cors.expose_headers:
        out.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    if cors.allow_credentials:
        out.append(("access-control-allow-credentials", "true"))
    return out


def chance(percent: float, rng: random.Random) -> bool:
    return percent >= 100.0 or rng.random() * 100.0 < percent
