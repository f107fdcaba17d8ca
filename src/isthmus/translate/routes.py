"""VirtualService rules compiled into snapshot routes (HTTP) and TCP/TLS routes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field

from isthmus.model import ResourceSet, VirtualService
from isthmus.model.virtualservice import (
    Destination,
    HeaderOperations,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    RouteDestination,
    StringMatch,
)
from isthmus.refs import ResourceRef
from isthmus.snapshot.match import (
    HeaderMatcher,
    L4Match,
    Network,
    RouteMatch,
    StringMatcher,
    parse_network,
)
from isthmus.snapshot.types import (
    Cors,
    DirectResponseAction,
    Fault,
    ForwardAction,
    HeaderOps,
    Mirror,
    RedirectAction,
    RetryPolicy,
    Rewrite,
    Route,
    RouteAction,
    TcpRoute,
    WeightedCluster,
    cluster_name,
)
from isthmus.translate import diagnostics as d
from isthmus.translate.binding import match_applies
from isthmus.translate.clusters import ClusterBuilder
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.hosts import fqdn, narrower, overlap
from isthmus.translate.regex import compile_re2


@dataclass
class RouteBuilder:
    resources: ResourceSet
    clusters: ClusterBuilder
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def _add(self, diag: Diagnostic) -> None:
        if diag not in self.diagnostics:
            self.diagnostics.append(diag)

    # --- HTTP --------------------------------------------------------------------------------

    def http_routes(self, vs: VirtualService, gateway_key: str | None) -> list[Route]:
        routes: list[Route] = []
        for i, rule in enumerate(vs.spec.http):
            path = f"spec.http[{i}]"
            if rule.delegate is not None:
                routes.extend(self._delegated(vs, rule, path, gateway_key))
                continue
            routes.extend(self._rule_routes(vs, rule, path, gateway_key, vs.ref, []))
        return routes

    def _rule_routes(
        self,
        vs: VirtualService,
        rule: HTTPRoute,
        path: str,
        gateway_key: str | None,
        origin: ResourceRef,
        outer: Sequence[HTTPMatchRequest],
    ) -> list[Route]:
        matches = [m for m in rule.match if match_applies(m.gateways, vs, gateway_key)]
        if rule.match and not matches:
            return []
        pairs: list[tuple[str, HTTPMatchRequest | None]] = [
            (f"{path}.match[{j}]", m) for j, m in enumerate(rule.match) if m in matches
        ] or [(path, None)]
        compiled: list[tuple[str, str, RouteMatch]] = []
        for match_path, match in pairs:
            combined = [m for m in (*outer, match) if m is not None]
            route_match = self._compile_match(combined, origin, match_path)
            if route_match is not None:
                name = ".".join(n for n in (rule.name, match.name if match else None) if n)
                compiled.append((name or f"{vs.name}.{match_path}", match_path, route_match))
        action = self._action(vs, rule, path, origin)
        if action is None:
            return []
        return [Route(name, rm, action, origin, mp) for name, mp, rm in compiled]

    def _delegated(
        self, root: VirtualService, rule: HTTPRoute, path: str, gateway_key: str | None
    ) -> list[Route]:
        assert rule.delegate is not None
        ns = rule.delegate.namespace or root.namespace
        target = self.resources.find("VirtualService", ns, rule.delegate.name)
        if target is None:
            self._add(
                d.error(
                    d.REFERENCED_RESOURCE_NOT_FOUND,
                    root.ref,
                    f"{path}.delegate",
                    f'Referenced delegate VirtualService not found: "{ns}/{rule.delegate.name}"',
                )
            )
            return []
        if target.spec.hosts or target.spec.gateways:
            self._add(
                d.invalid(
                    target.ref,
                    "spec.hosts",
                    "a delegate VirtualService must not set hosts or gateways",
                )
            )
            return []
        outer = [m for m in rule.match if match_applies(m.gateways, root, gateway_key)]
        if rule.match and not outer:
            return []
        routes: list[Route] = []
        outer_blocks: list[HTTPMatchRequest | None] = list(outer) or [None]
        for outer_match in outer_blocks:
            for j, inner in enumerate(target.spec.http):
                routes.extend(
                    self._rule_routes(
                        target,
                        inner,
                        f"spec.http[{j}]",
                        gateway_key,
                        target.ref,
                        [outer_match] if outer_match else [],
                    )
                )
        return routes

    def _compile_match(
        self, matches: list[HTTPMatchRequest], ref: ResourceRef, path: str
    ) -> RouteMatch | None:
        """AND of the given match requests (a delegate's inside its root's)."""
        fields: dict[str, object] = {}
        headers: list[HeaderMatcher] = []
        query: list[tuple[str, StringMatcher]] = []
        name = ""
        for m in matches:
            name = m.name or name
            for attr in ("uri", "method", "authority", "scheme"):
                sm = getattr(m, attr)
                if sm is not None:
                    ignore = attr == "uri" and m.ignore_uri_case
                    compiled = self._string(sm, ref, f"{path}.{attr}", ignore)
                    if compiled is None:
                        return None
                    fields[attr] = compiled
            if m.port is not None:
                fields["port"] = m.port
            for key, sm in m.headers.items():
                compiled = self._string(sm, ref, f"{path}.headers.{key}", False)
                if compiled is None:
                    return None
                headers.append(HeaderMatcher(key.lower(), compiled))
            for key, sm in m.without_headers.items():
                compiled = self._string(sm, ref, f"{path}.withoutHeaders.{key}", False)
                if compiled is None:
                    return None
                headers.append(HeaderMatcher(key.lower(), compiled, invert=True))
            for key, sm in m.query_params.items():
                compiled = self._string(sm, ref, f"{path}.queryParams.{key}", False)
                if compiled is None:
                    return None
                query.append((key, compiled))
        return RouteMatch(headers=tuple(headers), query_params=tuple(query), name=name, **fields)  # type: ignore[arg-type]

    def _string(
        self, sm: StringMatch, ref: ResourceRef, path: str, ignore_case: bool
    ) -> StringMatcher | None:
        if sm.exact is not None:
            value = sm.exact.lower() if ignore_case else sm.exact
            return StringMatcher("exact", value, ignore_case)
        if sm.prefix is not None:
            value = sm.prefix.lower() if ignore_case else sm.prefix
            return StringMatcher("prefix", value, ignore_case)
        if sm.regex is not None:
            pattern = f"(?i:{sm.regex})" if ignore_case else sm.regex
            compiled, why = compile_re2(pattern)
            if compiled is None:
                self._add(
                    d.invalid(
                        ref,
                        f"{path}.regex",
                        f'"{sm.regex}" is not a valid RE2 regular expression: {why}',
                    )
                )
                return None
            return StringMatcher("regex", sm.regex, False, compiled)
        return StringMatcher("present")

    def _action(
        self, vs: VirtualService, rule: HTTPRoute, path: str, ref: ResourceRef
    ) -> RouteAction | None:
        if rule.redirect is not None:
            r = rule.redirect
            return RedirectAction(
                r.uri, r.authority, r.port, r.derive_port, r.scheme, r.redirect_code
            )
        if rule.direct_response is not None:
            dr = rule.direct_response
            body = b""
            if dr.body is not None and dr.body.string is not None:
                body = dr.body.string.encode()
            elif dr.body is not None and dr.body.bytes is not None:
                try:
                    body = base64.b64decode(dr.body.bytes, validate=True)
                except (binascii.Error, ValueError):
                    self._add(
                        d.invalid(ref, f"{path}.directResponse.body.bytes", "expected base64 data")
                    )
                    return None
            return DirectResponseAction(dr.status, body)
        if not rule.route:
            self._add(
                d.invalid(ref, path, "HTTP route must have route, redirect or directResponse")
            )
            return None
        clusters = self._weighted(vs, rule.route, ref, f"{path}.route")
        if clusters is None:
            return None
        return ForwardAction(
            clusters=clusters,
            timeout=rule.timeout or None,
            retries=self._retries(rule),
            rewrite=self._rewrite(rule, ref, path),
            mirrors=self._mirrors(vs, rule, ref, path),
            fault=self._fault(rule),
            cors=self._cors(rule, ref, path),
            request_headers=_ops(rule.headers.request if rule.headers else None),
            response_headers=_ops(rule.headers.response if rule.headers else None),
        )

    def _weighted(
        self,
        vs: VirtualService,
        dests: Sequence[HTTPRouteDestination | RouteDestination],
        ref: ResourceRef,
        path: str,
    ) -> tuple[WeightedCluster, ...] | None:
        single = len(dests) == 1
        weights = [100 if single and x.weight is None else (x.weight or 0) for x in dests]
        total = sum(weights)
        if total == 0:
            if not single:
                self._add(
                    d.invalid(
                        ref,
                        path,
                        "total destination weight is 0: at least one weight must be greater than 0",
                    )
                )
                return None
            weights, total = [100], 100
        out: list[WeightedCluster] = []
        for k, (dest, weight) in enumerate(zip(dests, weights, strict=True)):
            name = self.clusters.destination(
                dest.destination, vs.namespace, ref, f"{path}[{k}].destination"
            )
            headers = dest.headers if isinstance(dest, HTTPRouteDestination) else None
            out.append(
                WeightedCluster(
                    cluster=name or _missing_cluster(dest.destination, vs.namespace),
                    weight=weight,
                    share=weight / total,
                    request_headers=_ops(headers.request if headers else None),
                    response_headers=_ops(headers.response if headers else None),
                )
            )
        return tuple(out)

    def _retries(self, rule: HTTPRoute) -> RetryPolicy:
        r = rule.retries
        if r is None:
            return RetryPolicy()
        if r.retry_on is None:
            return RetryPolicy(attempts=r.attempts, per_try_timeout=r.per_try_timeout)
        conditions = [c.strip() for c in r.retry_on.split(",") if c.strip()]
        codes = tuple(int(c) for c in conditions if c.isdigit())
        names = tuple(c for c in conditions if not c.isdigit())
        if codes and "retriable-status-codes" not in names:
            names = (*names, "retriable-status-codes")
        return RetryPolicy(r.attempts, r.per_try_timeout, names, codes)

    def _rewrite(self, rule: HTTPRoute, ref: ResourceRef, path: str) -> Rewrite | None:
        rw = rule.rewrite
        if rw is None:
            return None
        if rw.uri_regex_rewrite is not None:
            compiled, why = compile_re2(rw.uri_regex_rewrite.match)
            if compiled is None:
                self._add(
                    d.invalid(
                        ref,
                        f"{path}.rewrite.uriRegexRewrite.match",
                        f"not a valid RE2 regular expression: {why}",
                    )
                )
                return None
            return Rewrite(rw.uri, rw.authority, compiled, rw.uri_regex_rewrite.rewrite)
        return Rewrite(rw.uri, rw.authority)

    def _mirrors(
        self, vs: VirtualService, rule: HTTPRoute, ref: ResourceRef, path: str
    ) -> tuple[Mirror, ...]:
        out: list[Mirror] = []
        if rule.mirror is not None:
            percent = 100.0
            if rule.mirror_percentage is not None:
                percent = rule.mirror_percentage.value
            elif rule.mirror_percent is not None:
                percent = float(rule.mirror_percent)
            name = self.clusters.destination(rule.mirror, vs.namespace, ref, f"{path}.mirror")
            if name:
                out.append(Mirror(name, percent))
        for k, m in enumerate(rule.mirrors):
            name = self.clusters.destination(
                m.destination, vs.namespace, ref, f"{path}.mirrors[{k}].destination"
            )
            if name:
                out.append(Mirror(name, m.percentage.value if m.percentage else 100.0))
        return tuple(out)

    def _fault(self, rule: HTTPRoute) -> Fault | None:
        f = rule.fault
        if f is None:
            return None
        out = Fault()
        if f.delay is not None:
            pct = (
                f.delay.percentage.value
                if f.delay.percentage
                else (float(f.delay.percent) if f.delay.percent is not None else 100.0)
            )
            out = Fault(
                delay=f.delay.fixed_delay or f.delay.exponential_delay or 0.0, delay_percent=pct
            )
        if f.abort is not None and f.abort.http_status is not None:
            pct = f.abort.percentage.value if f.abort.percentage else 100.0
            out = Fault(out.delay, out.delay_percent, f.abort.http_status, pct)
        return out

    def _cors(self, rule: HTTPRoute, ref: ResourceRef, path: str) -> Cors | None:
        c = rule.cors_policy
        if c is None:
            return None
        origins: list[object] = []
        for k, sm in enumerate(c.allow_origins):
            m = self._string(sm, ref, f"{path}.corsPolicy.allowOrigins[{k}]", False)
            if m is not None:
                origins.append(m)
        origins.extend(StringMatcher("exact", o) for o in c.allow_origin)
        return Cors(
            tuple(origins),
            tuple(c.allow_methods),
            tuple(c.allow_headers),
            tuple(c.expose_headers),
            c.max_age,
            c.allow_credentials,
        )

    # --- TCP and TLS -------------------------------------------------------------------------

    def tcp_routes(
        self, vs: VirtualService, gateway_key: str | None, gateway_port: int | None
    ) -> list[TcpRoute]:
        out: list[TcpRoute] = []
        for i, rule in enumerate(vs.spec.tcp):
            path = f"spec.tcp[{i}]"
            entries = [
                (f"{path}.match[{j}]", m)
                for j, m in enumerate(rule.match)
                if match_applies(m.gateways, vs, gateway_key)
                and (m.port is None or gateway_port is None or m.port == gateway_port)
            ]
            if rule.match and not entries:
                continue
            clusters = self._weighted(vs, rule.route, vs.ref, f"{path}.route")
            if clusters is None:
                continue
            if not rule.match:
                out.append(TcpRoute(L4Match(), clusters, vs.ref, path))
            for mpath, m in entries:
                src = self._networks(
                    [m.source_subnet] if m.source_subnet else [], vs.ref, f"{mpath}.sourceSubnet"
                )
                dst = self._networks(m.destination_subnets, vs.ref, f"{mpath}.destinationSubnets")
                if src is None or dst is None:
                    continue
                out.append(TcpRoute(L4Match(m.port, src, dst), clusters, vs.ref, mpath))
        return out

    def tls_routes(
        self,
        vs: VirtualService,
        gateway_key: str | None,
        gateway_port: int | None,
        server_hosts: list[str],
    ) -> list[TcpRoute]:
        out: list[TcpRoute] = []
        for i, rule in enumerate(vs.spec.tls):
            path = f"spec.tls[{i}]"
            for j, m in enumerate(rule.match):
                mpath = f"{path}.match[{j}]"
                if not match_applies(m.gateways, vs, gateway_key):
                    continue
                if m.port is not None and gateway_port is not None and m.port != gateway_port:
                    continue
                snis = [
                    narrower(s.lower(), h)
                    for s in m.sni_hosts
                    for h in server_hosts
                    if overlap(s.lower(), h)
                ]
                if not snis:
                    continue
                dst = self._networks(m.destination_subnets, vs.ref, f"{mpath}.destinationSubnets")
                clusters = self._weighted(vs, rule.route, vs.ref, f"{path}.route")
                if dst is None or clusters is None:
                    continue
                out.append(
                    TcpRoute(
                        L4Match(m.port, (), dst, tuple(dict.fromkeys(snis))),
                        clusters,
                        vs.ref,
                        mpath,
                    )
                )
        return out

    def _networks(
        self, items: list[str], ref: ResourceRef, path: str
    ) -> tuple[Network, ...] | None:
        nets: list[Network] = []
        for k, text in enumerate(items):
            try:
                nets.append(parse_network(text))
            except ValueError:
                self._add(
                    d.invalid(
                        ref,
                        f"{path}[{k}]" if len(items) > 1 or "Subnets" in path else path,
                        f'"{text}" is not an IP address or CIDR',
                    )
                )
                return None
        return tuple(nets)


def _ops(ops: HeaderOperations | None) -> HeaderOps:
    if ops is None:
        return HeaderOps()
    return HeaderOps(
        tuple((k.lower(), v) for k, v in ops.set.items()),
        tuple((k.lower(), v) for k, v in ops.add.items()),
        tuple(k.lower() for k in ops.remove),
    )


def _missing_cluster(dest: Destination, namespace: str) -> str:
    """The name a destination's cluster would have; it is absent, so traffic gets 500 NC."""
    port = dest.port.number if dest.port else 0
    return cluster_name(port, dest.subset or "", fqdn(dest.host, namespace))
