"""Compiled request matchers: built once at translate time, evaluated on every request.

A matcher is data (so ``explain`` can print it) with a ``matches`` method that does no parsing.
Regexes arrive already compiled (RE2, by ``translate``); this module only calls ``fullmatch``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class Pattern(Protocol):
    def fullmatch(self, text: str) -> Any: ...


StringKind = Literal["exact", "prefix", "regex", "present"]


@dataclass(frozen=True, slots=True)
class StringMatcher:
    kind: StringKind
    value: str = ""
    ignore_case: bool = False
    pattern: Pattern | None = field(default=None, compare=False)

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
        return self.pattern is not None and self.pattern.fullmatch(text) is not None

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

    def matches(self, req: RequestView) -> bool:
        if self.uri is not None and not self.uri.matches(req.path.split("?", 1)[0]):
            return False
        if self.method is not None and not self.method.matches(req.method):
            return False
        if self.authority is not None and not self.authority.matches(req.authority):
            return False
        if self.scheme is not None and not self.scheme.matches(req.scheme):
            return False
        if self.port is not None and self.port != req.port:
            return False
        for header in self.headers:
            if not header.matches(req.headers):
                return False
        return all(matcher.matches(req.query.get(key)) for key, matcher in self.query_params)

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
