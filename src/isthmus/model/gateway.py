"""networking.istio.io Gateway: the ports, protocols, hosts and TLS a gateway workload opens."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from isthmus.model.base import Model, PortNumber, Str, enum_of

Protocol = Annotated[
    Literal["HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO", "REDIS", "MYSQL"],
    enum_of(
        "HTTP",
        "HTTPS",
        "HTTP2",
        "GRPC",
        "GRPC-WEB",
        "TCP",
        "TLS",
        "MONGO",
        "REDIS",
        "MYSQL",
        upper=True,
    ),
]
ServerTLSMode = Annotated[
    Literal[
        "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
    ],
    enum_of(
        "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
    ),
]
TLSProtocolVersion = Annotated[
    Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"],
    enum_of("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"),
]


class Port(Model):
    number: PortNumber
    protocol: Protocol
    name: Str = ""
    target_port: PortNumber | None = None


class TLSCertificate(Model):
    server_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None


class ServerTLSSettings(Model):
    https_redirect: bool = False
    mode: ServerTLSMode = "PASSTHROUGH"
    server_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None
    ca_crl: Str | None = None
    credential_name: Str | None = None
    credential_names: list[Str] = Field(default_factory=list)
    tls_certificates: list[TLSCertificate] = Field(default_factory=list)
    subject_alt_names: list[Str] = Field(default_factory=list)
    verify_certificate_spki: list[Str] = Field(default_factory=list)
    verify_certificate_hash: list[Str] = Field(default_factory=list)
    min_protocol_version: TLSProtocolVersion = "TLS_AUTO"
    max_protocol_version: TLSProtocolVersion = "TLS_AUTO"
    cipher_suites: list[Str] = Field(default_factory=list)


class Server(Model):
    port: Port
    hosts: list[Str]
    bind: Str | None = None
    tls: ServerTLSSettings | None = None
    default_endpoint: Str | None = None
    name: Str | None = None


class GatewaySpec(Model):
    servers: list[Server] = Field(default_factory=list)
    selector: dict[str, Str] | None = None
