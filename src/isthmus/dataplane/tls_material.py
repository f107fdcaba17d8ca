"""Putting PEM certificates, keys, CAs and CRLs into an ``ssl.SSLContext``.

Python's ``load_cert_chain`` (and the CRL and DH-parameter loaders) only read *files*, but
credentials from Kubernetes Secrets arrive as bytes. On Linux the bytes go into anonymous
``memfd_create`` files that OpenSSL opens through ``/proc/self/fd/N``: they never touch a
filesystem and vanish when the descriptor is closed, right after loading. Elsewhere (or if
``/proc`` or ``memfd_create`` is unavailable) they are written into a fresh 0700 directory as
0600 files, loaded and unlinked at once; that fallback does leave key bytes on a disk-backed
filesystem for the duration of the load (and in whatever the filesystem keeps afterwards).

CA bundles are loaded from memory directly (``cadata``). Every blob is checked to hold the PEM
blocks its role expects: a "CRL" that smuggled in a CERTIFICATE would otherwise become a
trusted root, since OpenSSL's file loader takes both.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import tempfile
from collections.abc import Iterator

from isthmus.dataplane.tls_errors import TLSConfigError

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_KEY_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})

#: Whether to use anonymous in-memory files; tests switch it off to exercise the fallback.
use_memfd = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def pem_labels(blob: bytes) -> list[str]:
    return [m.decode("ascii") for m in _PEM_LABEL.findall(blob)]


def _expect(blob: bytes, allowed: frozenset[str], what: str) -> None:
    labels = pem_labels(blob)
    if not labels:
        raise TLSConfigError(f"{what}: no PEM data")
    stray = sorted(set(labels) - allowed)
    if stray:
        raise TLSConfigError(f"{what}: unexpected PEM block(s) {', '.join(stray)}")


def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def pem_paths(*blobs: bytes) -> Iterator[tuple[str, ...]]:
    """Paths OpenSSL can open, one per blob, that exist only inside the ``with``."""
    global use_memfd
    if use_memfd:
        fds: list[int] = []
        try:
            try:
                for blob in blobs:
                    fd = os.memfd_create("isthmus-tls", os.MFD_CLOEXEC)
                    fds.append(fd)
                    _write_all(fd, blob)
            except OSError:  # memfd_create refused (seccomp, ENOSYS): use files from now on
                use_memfd = False
            else:
                yield tuple(f"/proc/self/fd/{fd}" for fd in fds)
                return
        finally:
            for fd in fds:
                os.close(fd)
    with _private_files(blobs) as paths:
        yield paths


@contextlib.contextmanager
def _private_files(blobs: tuple[bytes, ...]) -> Iterator[tuple[str, ...]]:
    directory = tempfile.mkdtemp(prefix="isthmus-tls-")  # mode 0700
    paths: list[str] = []
    try:
        for i, blob in enumerate(blobs):
            path = os.path.join(directory, f"{i}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            paths.append(path)
            try:
                _write_all(fd, blob)
            finally:
                os.close(fd)
        yield tuple(paths)
    finally:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.rmdir(directory)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    return str(exc) or type(exc).__name__


def load_key_pair(ctx: ssl.SSLContext, cert: bytes, key: bytes, what: str) -> None:
    """Add a certificate chain and its key (one per key type: RSA and ECDSA can coexist)."""
    _expect(cert, frozenset({"CERTIFICATE"}), f"{what} certificate")
    _expect(key, _KEY_LABELS, f"{what} private key")
    try:
        with pem_paths(cert, key) as (cert_path, key_path):
            ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TLSConfigError(f"{what}: certificate/key do not load: {_reason(exc)}") from exc


def load_key_pair_files(ctx: ssl.SSLContext, cert_path: str, key_path: str, what: str) -> None:
    try:
        ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TLSConfigError(
            f"{what}: {cert_path} / {key_path} do not load: {_reason(exc)}"
        ) from exc


def load_ca(ctx: ssl.SSLContext, pem: bytes, what: str) -> None:
    """Trust the CERTIFICATE blocks of ``pem`` for verifying the peer."""
    _expect(pem, frozenset({"CERTIFICATE"}), what)
    try:
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, ValueError) as exc:
        raise TLSConfigError(f"{what}: CA certificates do not load: {_reason(exc)}") from exc


def load_ca_file(ctx: ssl.SSLContext, path: str, what: str) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TLSConfigError(f"{what}: {path} does not load: {_reason(exc)}") from exc


def load_crl(ctx: ssl.SSLContext, pem: bytes, what: str) -> None:
    """Check client leaf certificates against the CRL(s) in ``pem``.

    Only the leaf is checked (``VERIFY_CRL_CHECK_LEAF``): with the whole chain checked, every
    intermediate would need a CRL of its own or every handshake would fail.
    """
    _expect(pem, frozenset({"X509 CRL"}), what)
    try:
        with pem_paths(pem) as (path,):
            ctx.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TLSConfigError(f"{what}: CRL does not load: {_reason(exc)}") from exc
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TLSConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc


def load_dh_params(ctx: ssl.SSLContext, pem: bytes) -> None:
    with pem_paths(pem) as (path,):
        ctx.load_dh_params(path)
