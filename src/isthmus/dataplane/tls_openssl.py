"""Two OpenSSL settings Python 3.11's ``ssl`` does not expose, reached through ctypes.

* ``SSL_CTX_set1_groups_list``: ``ssl`` can set one ECDH curve (``set_ecdh_curve``), not a
  list, and not X25519, so Mozilla's "X25519:P-256:P-384" needs OpenSSL directly.
* ``SSL_CTX_set_session_cache_mode(OFF)``: an SNI-switching front context must not resume
  sessions (see ``tls_sni``), and ``ssl`` has no switch for the server session cache.
* ``SSL_CTX_set_session_cache_mode(SERVER | NO_AUTO_CLEAR)``: OpenSSL 3.0 otherwise scans the
  whole server session cache for expired sessions every 255 handshakes (up to 20,480
  sessions, two TLS 1.3 tickets per handshake), a few percent of a handshake's CPU; the
  cache still evicts its oldest session when full, and never resumes an expired one.

On CPython a ``PySSLContext`` starts with its ``SSL_CTX *`` right after the object header
(``object.__basicsize__`` bytes, which accounts for debug and free-threaded builds); that has
held since Python 3.2. The pointer is cross-checked (OpenSSL's options must equal
``ctx.options``) before anything is set. Every helper returns ``False`` when it could not act
(another interpreter, a static ``_ssl``, ``ISTHMUS_TLS_NO_CTYPES=1``) and the caller decides
what that means.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import ssl
import sys

_SSL_CTRL_SET_SESS_CACHE_MODE = 44
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_SESS_CACHE_OFF = 0
_SSL_SESS_CACHE_SERVER = 0x0002
_SSL_SESS_CACHE_NO_AUTO_CLEAR = 0x0080


@functools.lru_cache(maxsize=1)
def _libssl() -> ctypes.CDLL | None:
    if sys.implementation.name != "cpython" or os.environ.get("ISTHMUS_TLS_NO_CTYPES"):
        return None
    if ssl.SSLContext.__basicsize__ < object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p):
        return None
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.ERR_clear_error.restype = None
        lib.ERR_clear_error.argtypes = []
    except (ImportError, AttributeError, OSError):
        return None
    return lib


def _ssl_ctx(ctx: ssl.SSLContext) -> tuple[ctypes.CDLL, int] | None:
    lib = _libssl()
    if lib is None:
        return None
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr:
        return None
    with contextlib.suppress(Exception):
        if int(lib.SSL_CTX_get_options(ptr)) == int(ctx.options):
            return lib, ptr
    return None


def available() -> bool:
    return _ssl_ctx(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) is not None


def set_groups(ctx: ssl.SSLContext, groups: tuple[str, ...]) -> bool:
    """Restrict key exchange to ``groups`` (OpenSSL names, all known to this OpenSSL)."""
    found = _ssl_ctx(ctx)
    if found is None:
        return False
    lib, ptr = found
    names = ctypes.c_char_p(":".join(groups).encode("ascii"))
    ok = lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.cast(names, ctypes.c_void_p))
    if ok != 1:  # an unknown name: OpenSSL keeps the old list and queues an error
        lib.ERR_clear_error()
    return bool(ok == 1)


def disable_session_cache(ctx: ssl.SSLContext) -> bool:
    """Turn the server-side session cache off (no TLS 1.2 session-ID resumption)."""
    found = _ssl_ctx(ctx)
    if found is None:
        return False
    lib, ptr = found
    lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF, None)
    return True


def keep_session_cache_unscanned(ctx: ssl.SSLContext) -> bool:
    """A server session cache that evicts by size only (no periodic full scan)."""
    found = _ssl_ctx(ctx)
    if found is None:
        return False
    lib, ptr = found
    mode = _SSL_SESS_CACHE_SERVER | _SSL_SESS_CACHE_NO_AUTO_CLEAR
    lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_SESS_CACHE_MODE, mode, None)
    return True
