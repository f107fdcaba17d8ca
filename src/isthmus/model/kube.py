"""The plain Kubernetes kinds a gateway reads: Service, Endpoints, EndpointSlice, Pod, Secret."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from isthmus.model.base import (
    IntOrString,
    LenientModel,
    Model,
    PortNumber,
    Str,
    enum_of,
    fail,
)
from isthmus.model.meta import KubeObject


class ServicePort(Model):
    name: Str = ""
    protocol: Annotated[Literal["TCP", "UDP", "SCTP"], enum_of("TCP", "UDP", "SCTP")] = "TCP"
    app_protocol: Str | None = None
    port: PortNumber
    target_port: IntOrString | None = None
    node_port: PortNumber | None = None


ServiceType = Annotated[
    Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
    enum_of("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"),
]


class ServiceSpec(Model):
    ports: list[ServicePort] = Field(default_factory=list)
    selector: dict[str, Str] | None = None
    type: ServiceType = "ClusterIP"
    cluster_ip: Str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[Str] = Field(default_factory=list, alias="clusterIPs")
    external_ips: list[Str] = Field(default_factory=list, alias="externalIPs")
    external_name: Str | None = None
    session_affinity: Str | None = None
    session_affinity_config: dict[str, Any] | None = None
    load_balancer_ip: Str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[Str] = Field(default_factory=list)
    load_balancer_class: Str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    external_traffic_policy: Str | None = None
    internal_traffic_policy: Str | None = None
    health_check_node_port: PortNumber | None = None
    publish_not_ready_addresses: bool | None = None
    ip_families: list[Str] = Field(default_factory=list)
    ip_family_policy: Str | None = None
    traffic_distribution: Str | None = None


class ObjectReference(LenientModel):
    kind: Str | None = None
    name: Str | None = None
    namespace: Str | None = None


class EndpointAddress(Model):
    ip: Str
    hostname: Str | None = None
    node_name: Str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(Model):
    name: Str = ""
    port: PortNumber
    protocol: Str = "TCP"
    app_protocol: Str | None = None


class EndpointSubset(Model):
    addresses: list[EndpointAddress] = Field(default_factory=list)
    not_ready_addresses: list[EndpointAddress] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)


class EndpointConditions(Model):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class SliceEndpoint(Model):
    addresses: list[Str]
    conditions: EndpointConditions | None = None
    hostname: Str | None = None
    node_name: Str | None = None
    target_ref: ObjectReference | None = None
    zone: Str | None = None
    hints: dict[str, Any] | None = None
    deprecated_topology: dict[str, Str] | None = None


class SlicePort(Model):
    name: Str = ""
    port: PortNumber | None = None
    protocol: Str = "TCP"
    app_protocol: Str | None = None


class PodIP(Model):
    ip: Str


class PodStatus(LenientModel):
    pod_ip: Str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] = Field(default_factory=list, alias="podIPs")
    phase: Str | None = None


def _decode_data(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("expected a mapping of key to base64 data")
    out: dict[str, bytes] = {}
    for key, text in value.items():
        if not isinstance(text, str):
            raise fail(f'key "{key}": expected base64 text')
        try:
            out[str(key)] = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise fail(f'key "{key}": invalid base64 ({exc})') from None
    return out


# Top-level objects -------------------------------------------------------------------------


class Service(KubeObject):
    kind: Literal["Service"]
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: Any = None


class Endpoints(KubeObject):
    kind: Literal["Endpoints"]
    subsets: list[EndpointSubset] = Field(default_factory=list)


class EndpointSlice(KubeObject):
    kind: Literal["EndpointSlice"]
    address_type: Str = "IPv4"
    endpoints: list[SliceEndpoint] = Field(default_factory=list)
    ports: list[SlicePort] = Field(default_factory=list)


class Pod(KubeObject):
    kind: Literal["Pod"]
    spec: Any = None
    status: PodStatus = Field(default_factory=PodStatus)


class Secret(KubeObject):
    kind: Literal["Secret"]
    type: Str = "Opaque"
    data: dict[str, bytes] = Field(default_factory=dict)
    string_data: dict[str, Str] = Field(default_factory=dict)
    immutable: bool | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _base64(cls, value: Any) -> dict[str, bytes]:
        return _decode_data(value)

    def value(self, key: str) -> bytes | None:
        """A key's bytes; ``stringData`` wins over ``data`` as the API server merges them."""
        if key in self.string_data:
            return self.string_data[key].encode()
        return self.data.get(key)
