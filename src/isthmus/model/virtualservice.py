"""networking.istio.io VirtualService: HTTP, TLS and TCP routing rules, field for field."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from isthmus.model.base import (
    Duration,
    Model,
    NonNegInt,
    Percentage,
    PortNumber,
    Str,
    Weight,
    enum_of,
    fail,
)


class StringMatch(Model):
    """Exactly one of exact/prefix/regex; an empty match means "present" for headers."""

    exact: Str | None = None
    prefix: Str | None = None
    regex: Str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) > 1:
            raise fail("only one of exact, prefix or regex may be set")
        return self


class PortSelector(Model):
    number: PortNumber


class Destination(Model):
    host: Str
    subset: Str | None = None
    port: PortSelector | None = None


class HeaderOperations(Model):
    set: dict[str, Str] = Field(default_factory=dict)
    add: dict[str, Str] = Field(default_factory=dict)
    remove: list[Str] = Field(default_factory=list)


class Headers(Model):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(Model):
    name: Str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = Field(default_factory=dict)
    port: PortNumber | None = None
    source_labels: dict[str, Str] = Field(default_factory=dict)
    gateways: list[Str] = Field(default_factory=list)
    query_params: dict[str, StringMatch] = Field(default_factory=dict)
    ignore_uri_case: bool = False
    without_headers: dict[str, StringMatch] = Field(default_factory=dict)
    source_namespace: Str | None = None
    stat_prefix: Str | None = None


class HTTPRouteDestination(Model):
    destination: Destination
    weight: Weight | None = None
    headers: Headers | None = None


class HTTPRedirect(Model):
    uri: Str | None = None
    authority: Str | None = None
    port: PortNumber | None = None
    derive_port: Annotated[
        Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None,
        enum_of("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"),
    ] = None
    scheme: Str | None = None
    redirect_code: Annotated[int, Field(ge=300, le=399)] = 301


class HTTPBody(Model):
    string: Str | None = None
    bytes: Str | None = None


class HTTPDirectResponse(Model):
    status: Annotated[int, Field(ge=200, le=599)]
    body: HTTPBody | None = None


class Delegate(Model):
    name: Str
    namespace: Str | None = None


class RegexRewrite(Model):
    match: Str
    rewrite: Str


class HTTPRewrite(Model):
    uri: Str | None = None
    authority: Str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPRetry(Model):
    attempts: NonNegInt = 2
    per_try_timeout: Duration | None = None
    retry_on: Str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


class Percent(Model):
    value: Percentage


class FaultDelay(Model):
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: Annotated[int, Field(ge=0, le=100)] | None = None


class FaultAbort(Model):
    http_status: Annotated[int, Field(ge=200, le=599)] | None = None
    grpc_status: Str | None = None
    http2_error: Str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Model):
    destination: Destination
    percentage: Percent | None = None


class CorsPolicy(Model):
    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_origin: list[Str] = Field(default_factory=list)
    allow_methods: list[Str] = Field(default_factory=list)
    allow_headers: list[Str] = Field(default_factory=list)
    expose_headers: list[Str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Annotated[
        Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None,
        enum_of("UNSPECIFIED", "FORWARD", "IGNORE"),
    ] = None


class HTTPRoute(Model):
    name: Str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = Field(default_factory=list)
    mirror_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


class RouteDestination(Model):
    destination: Destination
    weight: Weight | None = None


class TLSMatchAttributes(Model):
    sni_hosts: list[Str]
    destination_subnets: list[Str] = Field(default_factory=list)
    port: PortNumber | None = None
    source_labels: dict[str, Str] = Field(default_factory=dict)
    gateways: list[Str] = Field(default_factory=list)
    source_namespace: Str | None = None


class TLSRoute(Model):
    match: list[TLSMatchAttributes]
    route: list[RouteDestination] = Field(default_factory=list)


class L4MatchAttributes(Model):
    destination_subnets: list[Str] = Field(default_factory=list)
    port: PortNumber | None = None
    source_subnet: Str | None = None
    source_labels: dict[str, Str] = Field(default_factory=dict)
    gateways: list[Str] = Field(default_factory=list)
    source_namespace: Str | None = None


class TCPRoute(Model):
    match: list[L4MatchAttributes] = Field(default_factory=list)
    route: list[RouteDestination] = Field(default_factory=list)


class VirtualServiceSpec(Model):
    hosts: list[Str] = Field(default_factory=list)
    gateways: list[Str] = Field(default_factory=list)
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[TLSRoute] = Field(default_factory=list)
    tcp: list[TCPRoute] = Field(default_factory=list)
    export_to: list[Str] = Field(default_factory=list)
