"""The immutable routing snapshot and offline routing (``simulate``)."""

from isthmus.snapshot.simulate import Call, Result, Step, simulate
from isthmus.snapshot.types import Cluster, Listener, Snapshot

__all__ = ["Call", "Cluster", "Listener", "Result", "Snapshot", "Step", "simulate"]
