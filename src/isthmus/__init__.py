"""isthmus: an Istio-compatible gateway for people not running Istio's control plane."""

__version__ = "0.1.0"
