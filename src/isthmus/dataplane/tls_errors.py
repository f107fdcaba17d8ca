"""The one error the TLS builders raise: a setting that cannot become a working context."""

from __future__ import annotations


class TLSConfigError(ValueError):
    """A Gateway/DestinationRule ``tls`` block isthmus cannot serve, and why.

    Raised when a context is built (so at config time, never mid-handshake); the message names
    the Istio field at fault.
    """
