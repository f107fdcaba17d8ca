"""networking.istio.io ServiceEntry and WorkloadEntry: services and workloads outside Kubernetes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from isthmus.model.base import Model, NonNegInt, PortNumber, Str, enum_of
from isthmus.model.destinationrule import WorkloadSelector
from isthmus.model.gateway import Protocol


class WorkloadEntrySpec(Model):
    address: Str | None = None
    ports: dict[str, PortNumber] = Field(default_factory=dict)
    labels: dict[str, Str] = Field(default_factory=dict)
    network: Str | None = None
    locality: Str | None = None
    weight: NonNegInt | None = None
    service_account: Str | None = None


class ServicePort(Model):
    number: PortNumber
    protocol: Protocol | None = None
    name: Str = ""
    target_port: PortNumber | None = None


class ServiceEntrySpec(Model):
    hosts: list[Str]
    addresses: list[Str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Annotated[
        Literal["MESH_EXTERNAL", "MESH_INTERNAL"], enum_of("MESH_EXTERNAL", "MESH_INTERNAL")
    ] = "MESH_EXTERNAL"
    resolution: Annotated[
        Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"],
        enum_of("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"),
    ] = "NONE"
    endpoints: list[WorkloadEntrySpec] = Field(default_factory=list)
    workload_selector: WorkloadSelector | None = None
    export_to: list[Str] = Field(default_factory=list)
    subject_alt_names: list[Str] = Field(default_factory=list)
