"""Typed Istio and Kubernetes resources, loaded from YAML the way ``kubectl apply -f`` reads it."""

from isthmus.model.errors import ConfigError, ConfigLoadError
from isthmus.model.kube import Endpoints, EndpointSlice, Pod, Secret, Service
from isthmus.model.meta import KubeObject
from isthmus.model.resources import (
    DestinationRule,
    Gateway,
    LoadResult,
    Note,
    ResourceSet,
    ServiceEntry,
    VirtualService,
    WorkloadEntry,
    load,
    load_text,
)
from isthmus.refs import ResourceRef

__all__ = [
    "ConfigError",
    "ConfigLoadError",
    "DestinationRule",
    "EndpointSlice",
    "Endpoints",
    "Gateway",
    "KubeObject",
    "LoadResult",
    "Note",
    "Pod",
    "ResourceRef",
    "ResourceSet",
    "Secret",
    "Service",
    "ServiceEntry",
    "VirtualService",
    "WorkloadEntry",
    "load",
    "load_text",
]
