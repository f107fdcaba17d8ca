"""Contexts by content, so a rotated certificate reaches new handshakes and only those.

A context is looked up by what it is made of: every setting of the ``tls`` block, a digest of
the Secret bytes (never the bytes themselves), and for file settings each file's identity
``(inode, mtime_ns, size)`` — re-read at most once per ``stat_interval`` per path, so a
handshake costs a dict lookup, not a ``stat``. A new Secret or a replaced file (including
Kubernetes' symlink swap of a mounted Secret) gives a new key and so a new context; connections
made with the old one keep it (their ``SSLObject`` holds it) until they close.

Failures are cached too, under the same key: a broken Secret costs one build, not one per
connection attempt, and is retried as soon as its content or files change.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from isthmus.dataplane.tls_context import client_context, server_context
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.snapshot.types import DownstreamTls, UpstreamTls

FileStamp = tuple[int, int, int] | None
_SECRET_FIELDS = frozenset({"secrets", "secret"})


def secrets_digest(secrets: Mapping[str, Mapping[str, bytes]]) -> bytes:
    """A digest of every Secret's keys and bytes, independent of mapping order."""
    h = hashlib.sha256()
    for name in sorted(secrets):
        data = secrets[name]
        for part in (name.encode(), *(x for k in sorted(data) for x in (k.encode(), data[k]))):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        h.update(b"\x00" * 8)
    return h.digest()


class ContextCache:
    """Server and client contexts keyed by content; see the module docstring."""

    def __init__(
        self,
        *,
        istio_ca: str | None = None,
        max_entries: int = 256,
        stat_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.istio_ca = istio_ca
        self.max_entries = max_entries
        self.stat_interval = stat_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: OrderedDict[Hashable, ssl.SSLContext | TLSConfigError] = OrderedDict()
        self._stats: dict[str, tuple[float, FileStamp]] = {}
        self._digests: dict[int, tuple[object, bytes]] = {}
        self._fixed: dict[int, tuple[object, tuple[tuple[Any, ...], bytes, tuple[str, ...]]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._stats.clear()
            self._digests.clear()
            self._fixed.clear()

    def get_server(
        self, tls: DownstreamTls, *, alpn: Sequence[str] = ("http/1.1",), owner: str = ""
    ) -> ssl.SSLContext:
        """The terminating context for ``tls`` as its Secrets and files are now.

        ``owner`` names a user that changes the context (a listener that sets its
        ``sni_callback``): it gets a context of its own, shared with no one else."""
        with self._lock:
            settings, digest, paths = self._server_fixed(tls)
            key = ("server", owner, settings, digest, tuple(alpn), *self._stamps(paths))
            return self._get(key, lambda: server_context(tls, alpn=alpn, istio_ca=self.istio_ca))

    def get_client(
        self,
        tls: UpstreamTls,
        *,
        host: str | None = None,
        alpn: Sequence[str] = (),
        secret: Mapping[str, bytes] | None = None,
    ) -> tuple[ssl.SSLContext, str | None]:
        """The originating context for ``tls`` and the SNI to send (``sni``, else ``host``)."""
        paths = (tls.ca_certificates, tls.client_certificate, tls.private_key)
        if secret is None and tls.secret:
            secret = dict(tls.secret)
        digest = None if secret is None else secrets_digest({"": secret})
        with self._lock:
            key = ("client", self._settings(tls), digest, tuple(alpn), *self._stamps(paths))
            ctx = self._get(key, lambda: client_context(tls, alpn=alpn, secret=secret)[0])
        return ctx, tls.sni or host

    # --- internals ---------------------------------------------------------------------------

    def _get(self, key: Hashable, build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """The entry for ``key``, built on a miss; called with the lock held."""
        found = self._entries.get(key)
        if found is None:
            try:
                found = build()
            except TLSConfigError as exc:
                found = exc
            self._entries[key] = found
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(found, TLSConfigError):
            raise TLSConfigError(str(found))
        return found

    @staticmethod
    def _settings(tls: DownstreamTls | UpstreamTls) -> tuple[Any, ...]:
        """Every setting but Secret contents (keyed by digest instead), lists made hashable."""
        values = (getattr(tls, f.name) for f in fields(tls) if f.name not in _SECRET_FIELDS)
        return tuple(tuple(v) if isinstance(v, list) else v for v in values)

    def _server_fixed(self, tls: DownstreamTls) -> tuple[tuple[Any, ...], bytes, tuple[str, ...]]:
        """The part of a server key that a snapshot object fixes (its settings, its Secrets'
        digest, the files to stamp), worked out once per object: every handshake asks."""
        found = self._fixed.get(id(tls))
        if found is not None and found[0] is tls:
            return found[1]
        paths = [tls.server_certificate, tls.private_key, tls.ca_certificates, tls.ca_crl]
        if self.istio_ca and not self.istio_ca.lstrip().startswith("-----BEGIN"):
            paths.append(self.istio_ca)
        fixed = (self._settings(tls), self._digest(tls), tuple(p for p in paths if p))
        if len(self._fixed) >= 4 * self.max_entries:
            self._fixed.clear()
        self._fixed[id(tls)] = (tls, fixed)  # holding ``tls`` keeps its id from being reused
        return fixed

    def _digest(self, tls: DownstreamTls) -> bytes:
        """``secrets_digest``, remembered per snapshot object (they are immutable)."""
        if not tls.secrets:
            return b""
        found = self._digests.get(id(tls))
        if found is not None and found[0] is tls:
            return found[1]
        digest = secrets_digest(tls.secrets)
        if len(self._digests) >= 4 * self.max_entries:
            self._digests.clear()
            self._fixed.clear()
        self._digests[id(tls)] = (tls, digest)  # holding ``tls`` keeps its id from being reused
        return digest

    def _stamps(self, paths: Sequence[str | None]) -> tuple[FileStamp, ...]:
        return tuple(self._stamp(p) for p in paths if p)

    def _stamp(self, path: str) -> FileStamp:
        now = self._clock()
        seen = self._stats.get(path)
        if seen is not None and now - seen[0] < self.stat_interval:
            return seen[1]
        try:
            st = os.stat(path)
            stamp: FileStamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        self._stats[path] = (now, stamp)
        return stamp
