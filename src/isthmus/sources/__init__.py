"""Where config comes from: files (watched), the Kubernetes API, etcd.

Every source hands the control plane the *whole* current set of documents (never a delta), so
one build path serves them all: debounce → load → validate → translate → publish or reject.
"""

from isthmus.sources.base import ConfigSource, SourceState, SourceUnavailable
from isthmus.sources.files import FileSource

__all__ = ["ConfigSource", "FileSource", "SourceState", "SourceUnavailable"]
