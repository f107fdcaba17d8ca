"""Compiled request matchers: built once at translate time, evaluated on every request.

A matcher is data (so ``explain`` can print it) with a ``matches`` method that does no parsing.
Regexes arrive already compiled (RE2, by ``translate``); this module only calls ``fullmatch``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl


class Pattern(Protocol):
    def fullmatch(self, text: str) -> Any: ...


StringKind = Literal["exact", "prefix", "regex", "present"]

_REGEX_SPECIAL = frozenset("\\.[](){}*+?|^$")
_QUANTIFIERS = frozenset("*+?{")


def literal_prefix(regex: str) -> str:
    """What every full match of ``regex`` starts with: its leading literal characters (RE2
    syntax), ``""`` when there is none or alternation makes it unsafe to say."""
    if "|" in regex:
        return ""
    end = 0
    while end < len(regex) and regex[end] not in _REGEX_SPECIAL:
        end += 1
    if end < len(regex) and regex[end] in _QUANTIFIERS:
        end -= 1  # the last literal is quantified: it may be absent or repeated
    return regex[: max(0, end)]


@dataclass(frozen=True, slots=True)
class StringMatcher:
    kind: StringKind
    value: str = ""
    ignore_case: bool = False
    pattern: Pattern | None = field(default=None, compare=False)
    _prefix: str = field(default="", compare=False, repr=False, init=False)

    def __post_init__(self) -> None:
        source = getattr(self.pattern, "pattern", None)  # as compiled: (?i:...) has no prefix
        if self.kind == "regex" and isinstance(source, str):
            object.__setattr__(self, "_prefix", literal_prefix(source))

    @property
    def prefix(self) -> str:
        """A regex's literal prefix: text without it cannot match, and checking it is far
        cheaper than calling into RE2 (most routes' regexes miss most paths)."""
        return self._prefix

    def matches(self, text: str | None) -> bool:
        if text is None:
            return False
        kind = self.kind
        if kind == "present":
            return True
        if self.ignore_case:
            text = text.lower()
        if kind == "exact":
            return text == self.value
        if kind == "prefix":
            return text.startswith(self.value)
        return (
            self.pattern is not None
            and text.startswith(self._prefix)
            and self.pattern.fullmatch(text) is not None
        )

    def __str__(self) -> str:
        if self.kind == "present":
            return "present"
        return f"{self.kind} {self.value}"


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    """``invert`` is a ``withoutHeaders`` entry: the request must *not* match."""

    name: str
    matcher: StringMatcher
    invert: bool = False

    def matches(self, headers: Mapping[str, str]) -> bool:
        return self.matcher.matches(headers.get(self.name)) != self.invert


@dataclass(frozen=True, slots=True)
class RequestView:
    """What route matching reads from an HTTP request (header names lower-case)."""

    path: str
    method: str
    authority: str
    scheme: str
    port: int
    headers: Mapping[str, str]
    query: Mapping[str, str]


class LazyRequest:
    """A :class:`RequestView` for the data plane: the header and query maps are built only
    when a matcher reads them (most routes match on the path alone)."""

    __slots__ = ("_header_list", "_headers", "_query", "_query_text", "authority", "method",
                 "path", "port", "scheme")  # fmt: skip

    def __init__(
        self,
        path: str,
        method: str,
        authority: str,
        scheme: str,
        port: int,
        headers: Sequence[tuple[str, str]],
        query: str,
    ) -> None:
        self.path = path
        self.method = method
        self.authority = authority
        self.scheme = scheme
        self.port = port
        self._header_list = headers
        self._query_text = query
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        if self._headers is None:
            self._headers = dict(self._header_list)
        return self._headers

    @property
    def query(self) -> Mapping[str, str]:
        if self._query is None:
            text = self._query_text
            self._query = dict(parse_qsl(text, keep_blank_values=True)) if text else {}
        return self._query


Request = RequestView | LazyRequest

# how a route's URI condition is checked (see ``RouteMatch.uri_check``)
URI_ANY, URI_EXACT, URI_PREFIX, URI_REGEX, URI_OTHER = range(5)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """One Istio ``HTTPMatchRequest``: every condition set must hold (AND)."""

    uri: StringMatcher | None = None
    method: StringMatcher | None = None
    authority: StringMatcher | None = None
    scheme: StringMatcher | None = None
    port: int | None = None
    headers: tuple[HeaderMatcher, ...] = ()
    query_params: tuple[tuple[str, StringMatcher], ...] = ()
    name: str = ""

    @property
    def is_catch_all(self) -> bool:
        return (
            (self.uri is None or (self.uri.kind == "prefix" and self.uri.value == "/"))
            and self.method is None
            and self.authority is None
            and self.scheme is None
            and self.port is None
            and not self.headers
            and not self.query_params
        )

    def matches(self, req: Request) -> bool:
        if self.uri is not None and not self.uri.matches(req.path.split("?", 1)[0]):
            return False
        return self.matches_besides_uri(req)

    @property
    def uri_check(self) -> tuple[int, Any, str]:
        """``(URI_*, value, literal prefix)``: the URI condition as a route table checks it
        inline, without a call per route."""
        uri = self.uri
        if uri is None:
            return URI_ANY, None, ""
        if uri.ignore_case or uri.kind == "present":
            return URI_OTHER, uri, ""
        if uri.kind == "exact":
            return URI_EXACT, uri.value, ""
        if uri.kind == "prefix":
            return URI_PREFIX, uri.value, ""
        if uri.pattern is None:
            return URI_OTHER, uri, ""
        return URI_REGEX, uri.pattern, uri.prefix

    @property
    def only_uri(self) -> bool:
        """Nothing but the URI (if that) is matched."""
        return (
            self.method is None
            and self.authority is None
            and self.scheme is None
            and self.port is None
            and not self.headers
            and not self.query_params
        )

    def matches_besides_uri(self, req: Request) -> bool:
        if self.method is not None and not self.method.matches(req.method):
            return False
        if self.authority is not None and not self.authority.matches(req.authority):
            return False
        if self.scheme is not None and not self.scheme.matches(req.scheme):
            return False
        if self.port is not None and self.port != req.port:
            return False
        if self.headers:
            headers = req.headers
            for header in self.headers:
                if not header.matches(headers):
                    return False
        if self.query_params:
            query = req.query
            for key, matcher in self.query_params:
                if not matcher.matches(query.get(key)):
                    return False
        return True

    def describe(self) -> str:
        parts: list[str] = []
        if self.uri is not None:
            parts.append(f"uri {self.uri}")
        if self.method is not None:
            parts.append(f"method {self.method}")
        if self.authority is not None:
            parts.append(f"authority {self.authority}")
        if self.scheme is not None:
            parts.append(f"scheme {self.scheme}")
        if self.port is not None:
            parts.append(f"port {self.port}")
        for h in self.headers:
            parts.append(f"header {h.name} {'not ' if h.invert else ''}{h.matcher}")
        for key, m in self.query_params:
            parts.append(f"query {key} {m}")
        return " AND ".join(parts) or "/*"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """A CIDR or a single address (``10.0.0.1`` means ``/32``); raises ValueError."""
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, slots=True)
class L4Match:
    """One Istio ``L4MatchAttributes`` (or the L4 part of a ``TLSMatchAttributes``)."""

    port: int | None = None
    source_subnets: tuple[Network, ...] = ()
    destination_subnets: tuple[Network, ...] = ()
    sni_hosts: tuple[str, ...] = ()

    def matches(self, port: int, source_ip: str, destination_ip: str, sni: str | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.source_subnets and not _in_any(source_ip, self.source_subnets):
            return False
        if self.destination_subnets and not _in_any(destination_ip, self.destination_subnets):
            return False
        return not self.sni_hosts or (sni is not None and sni_matches(self.sni_hosts, sni))

    def describe(self) -> str:
        parts = []
        if self.port is not None:
            parts.append(f"port {self.port}")
        if self.source_subnets:
            parts.append("source " + ",".join(map(str, self.source_subnets)))
        if self.destination_subnets:
            parts.append("destination " + ",".join(map(str, self.destination_subnets)))
        if self.sni_hosts:
            parts.append("sni " + ",".join(self.sni_hosts))
        return " AND ".join(parts) or "ALL"


def _in_any(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in net for net in networks)


def host_matches(pattern: str, host: str) -> bool:
    """Does ``host`` fall under ``pattern`` (``*``, ``*.suffix`` or exact), case-insensitive."""
    pattern = pattern.lower()
    host = host.lower()
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def sni_matches(patterns: tuple[str, ...], sni: str) -> bool:
    return any(host_matches(p, sni) for p in patterns)
