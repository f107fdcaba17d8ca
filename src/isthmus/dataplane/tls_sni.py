"""Choosing a server certificate by SNI when several Gateway servers share one port.

Two ways, same lookup (exact name > longest ``*.suffix`` > default, case-insensitive, as
Envoy's filter-chain ``server_names``):

* :meth:`SniRouter.context_for` — the listener has already sniffed the ClientHello
  (``isthmus.proto.tls_hello``) and wraps the connection with the chosen context. This is the
  complete path: each context keeps its own versions, ciphers, client-certificate mode and
  session cache.
* :attr:`SniRouter.front` — one context to wrap with, whose ``sni_callback`` swaps in the
  chosen one mid-handshake (``SSLObject.context = ...``, OpenSSL's ``SSL_set_SSL_CTX``). The
  swap moves the certificate/key, the trust store (CA, CRL), ALPN and the session-id context,
  but OpenSSL has by then fixed what it copied from the first context at ``SSL_new``: the
  protocol versions, cipher list, options, ``verify_mode`` and verify flags, and the session
  cache. So the front is only offered when every context agrees on those
  (:class:`TLSConfigError` otherwise), and it takes them from the default context.

  The shared session cache matters most: OpenSSL decides to resume a session *before* the SNI
  callback runs, so a session from ``a.example.com`` would resume on ``b.example.com`` —
  skipping b's client-certificate CA and serving a's certificate (virtual-host confusion).
  The front therefore never resumes: no TLS 1.3 tickets, no TLS 1.2 tickets, and its session
  cache off (which needs ``tls_openssl``; without it there is no front).

A server may be given as a context or as a zero-argument callable returning one (say
``lambda: cache.get_server(tls)``), looked up on every handshake so that rotated certificates
are picked up; a rotated context whose handshake settings no longer match the front's is
refused on the front (``context_for`` still serves it).
"""

from __future__ import annotations

import contextlib
import ssl
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from isthmus.dataplane.tls_context import TLSContext
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.tls_openssl import disable_session_cache
from isthmus.dataplane.tls_policy import apply_server_policy


def _normalize(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        with contextlib.suppress(UnicodeError):
            name = name.encode("idna").decode("ascii")
    return name


ContextSource = ssl.SSLContext | Callable[[], ssl.SSLContext]

_SETTINGS: weakref.WeakKeyDictionary[ssl.SSLContext, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def handshake_settings(ctx: ssl.SSLContext) -> tuple[Any, ...]:
    """What an SNI switch cannot change, so every context of one front must share it."""
    found = _SETTINGS.get(ctx)
    if found is None:
        found = _SETTINGS[ctx] = (
            ctx.minimum_version,
            ctx.maximum_version,
            tuple(c["name"] for c in ctx.get_ciphers()),
            int(ctx.options),
            ctx.verify_mode,
            int(ctx.verify_flags),
        )
    return found


def _resolve(source: ContextSource) -> ssl.SSLContext:
    return source if isinstance(source, ssl.SSLContext) else source()


class SniRouter:
    """The contexts of one TLS listener, by server name."""

    def __init__(
        self,
        servers: Iterable[tuple[Iterable[str], ContextSource]],
        *,
        default: ContextSource | None = None,
    ) -> None:
        """``servers``: (``server_names``, context) pairs; names may be ``*.suffix``; a pair
        with no names or with ``*`` is a catch-all. ``default`` (else the first catch-all)
        serves a ClientHello without SNI or with an unknown name; without one such
        handshakes are refused. Where two servers claim a name the first keeps it."""
        self._exact: dict[str, ContextSource] = {}
        wildcards: dict[str, ContextSource] = {}
        self._sources: list[ContextSource] = [] if default is None else [default]
        for patterns, source in servers:
            if all(s is not source for s in self._sources):
                self._sources.append(source)
            names = [_normalize(p) for p in patterns]
            if (not names or "*" in names) and default is None:
                default = source
            for name in names:
                if name == "*":
                    continue
                if name.startswith("*"):
                    wildcards.setdefault(name[1:], source)
                else:
                    self._exact.setdefault(name, source)
        self._wildcards = sorted(wildcards.items(), key=lambda item: -len(item[0]))
        self._default = default
        self._front: ssl.SSLContext | None = None
        self._front_settings: tuple[Any, ...] = ()

    def source_for(self, sni: str | None) -> ContextSource | None:
        if sni:
            name = _normalize(sni)
            found = self._exact.get(name)
            if found is not None:
                return found
            for suffix, source in self._wildcards:
                if name.endswith(suffix) and len(name) > len(suffix):
                    return source
        return self._default

    def context_for(self, sni: str | None) -> ssl.SSLContext | None:
        """The context for this server name; ``None`` = no server on this port takes it."""
        source = self.source_for(sni)
        return None if source is None else _resolve(source)

    @property
    def front(self) -> ssl.SSLContext:
        """One context to wrap every connection with; it switches by SNI (see module doc)."""
        if self._front is None:
            self._front = self._make_front()
        return self._front

    def _make_front(self) -> ssl.SSLContext:
        if not self._sources:
            raise TLSConfigError("no TLS servers on this listener")
        contexts = [_resolve(s) for s in self._sources]
        template = contexts[0] if self._default is None else _resolve(self._default)
        settings = handshake_settings(template)
        if any(handshake_settings(ctx) != settings for ctx in contexts):
            raise TLSConfigError(
                "servers sharing this port differ in TLS versions, cipher suites or "
                "client-certificate mode, which cannot change after the ClientHello; "
                "sniff the SNI and use context_for() instead of the front context"
            )
        front = TLSContext(ssl.PROTOCOL_TLS_SERVER)
        policy = getattr(template, "policy", None)
        if policy is not None:
            apply_server_policy(front, policy)
        else:
            front.minimum_version = template.minimum_version
            front.maximum_version = template.maximum_version
            front.set_ciphers(":".join(c["name"] for c in template.get_ciphers()))
        front.options = template.options
        front.verify_mode = template.verify_mode
        front.verify_flags = template.verify_flags
        if handshake_settings(front) != settings:
            raise TLSConfigError("could not reproduce the servers' TLS settings on one context")
        front.num_tickets = 0
        if not disable_session_cache(front):
            raise TLSConfigError(
                "cannot turn off session resumption on an SNI front context here; "
                "sniff the SNI and use context_for()"
            )
        front.sni_callback = self._on_sni
        self._front_settings = settings
        return front

    def _on_sni(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _front: ssl.SSLContext
    ) -> int | None:
        try:
            chosen = self.context_for(server_name)
        except TLSConfigError:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        if handshake_settings(chosen) != self._front_settings:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        ssl_object.context = chosen
        return None
