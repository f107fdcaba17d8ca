"""ContextCache: rotated Secrets and files reach new handshakes; open connections keep theirs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from isthmus.dataplane import tls_cache
from isthmus.dataplane.tls import ContextCache, TLSConfigError, secrets_digest
from isthmus.dataplane.tls_context import server_context
from isthmus.snapshot.types import DownstreamTls, UpstreamTls

from ..tls_certs import Leaf
from .conftest import Pki
from .handshake import client_ctx, handshake


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def secret_tls(leaf: Leaf) -> DownstreamTls:
    return DownstreamTls("SIMPLE", credential_names=("site",), secrets={"site": leaf.secret()})


def install(leaf: Leaf, directory: Path) -> tuple[str, str]:
    """Put ``leaf`` at fixed paths by atomic rename, as a Secret volume update does."""
    paths = []
    for src, name in ((leaf.cert_path, "tls.crt"), (leaf.key_path, "tls.key")):
        tmp = directory / f".{name}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, directory / name)
        paths.append(str(directory / name))
    return paths[0], paths[1]


def test_same_content_same_context(pki: Pki) -> None:
    cache = ContextCache()
    first = cache.get_server(secret_tls(pki.a))
    assert cache.get_server(secret_tls(pki.a)) is first  # an equal but distinct snapshot object
    assert cache.get_server(secret_tls(pki.a), alpn=("h2",)) is not first
    assert len(cache) == 2


def test_secret_digest_ignores_order_but_not_content(pki: Pki) -> None:
    one = {"a": {"cert": b"1", "key": b"2"}, "b": {"cert": b"3"}}
    two = {"b": {"cert": b"3"}, "a": {"key": b"2", "cert": b"1"}}
    assert secrets_digest(one) == secrets_digest(two)
    assert secrets_digest(one) != secrets_digest(
        {"a": {"cert": b"12", "key": b""}, "b": {"cert": b"3"}}
    )


def test_rotated_secret_new_handshakes_see_the_new_certificate(pki: Pki) -> None:
    cache = ContextCache()
    before = handshake(cache.get_server(secret_tls(pki.a)), client_ctx(), "a.example.com")
    assert before.served_serial == pki.a.serial
    after = handshake(cache.get_server(secret_tls(pki.b)), client_ctx(), "a.example.com")
    assert after.served_serial == pki.b.serial
    assert before.roundtrip(b"opened before the rotation") == b"opened before the rotation"
    assert before.client is not None and before.served_serial == pki.a.serial
    before.close()
    after.close()


def test_rotated_files_are_seen_after_the_stat_interval(pki: Pki, tmp_path: Path) -> None:
    clock = FakeClock()
    cache = ContextCache(clock=clock, stat_interval=1.0)
    cert, key = install(pki.a, tmp_path)
    tls = DownstreamTls("SIMPLE", server_certificate=cert, private_key=key)
    old_ctx = cache.get_server(tls)
    before = handshake(old_ctx, client_ctx(), "a.example.com")
    assert before.served_serial == pki.a.serial

    install(pki.b, tmp_path)
    clock.now += 0.5
    assert cache.get_server(tls) is old_ctx  # not re-stat'ed yet
    clock.now += 0.6
    new_ctx = cache.get_server(tls)
    assert new_ctx is not old_ctx
    after = handshake(new_ctx, client_ctx(), "a.example.com")
    assert after.served_serial == pki.b.serial
    assert before.roundtrip() == b"ping"
    before.close()
    after.close()


def test_a_half_rotated_pair_recovers(pki: Pki, tmp_path: Path) -> None:
    """Certificate replaced before its key: one failure, then the new pair once both land."""
    clock = FakeClock()
    cache = ContextCache(clock=clock)
    cert, key = install(pki.a, tmp_path)
    tls = DownstreamTls("SIMPLE", server_certificate=cert, private_key=key)
    cache.get_server(tls)
    shutil.copyfile(pki.b.cert_path, tmp_path / "new.crt")
    os.replace(tmp_path / "new.crt", cert)
    clock.now += 2
    with pytest.raises(TLSConfigError, match="do not load"):
        cache.get_server(tls)
    shutil.copyfile(pki.b.key_path, tmp_path / "new.key")
    os.replace(tmp_path / "new.key", key)
    clock.now += 2
    out = handshake(cache.get_server(tls), client_ctx(), "x")
    assert out.served_serial == pki.b.serial
    out.close()


def test_failures_are_cached_until_the_content_changes(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = server_context

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tls_cache, "server_context", counting)
    cache = ContextCache()
    broken = DownstreamTls("SIMPLE", credential_names=("s",), secrets={"s": {"cert": b"junk"}})
    for _ in range(3):
        with pytest.raises(TLSConfigError, match=r"no tls\.crt"):
            cache.get_server(broken)
    assert len(calls) == 1
    cache.get_server(secret_tls(pki.a))
    assert len(calls) == 2


def test_client_contexts_and_rotation(pki: Pki, tmp_path: Path) -> None:
    clock = FakeClock()
    cache = ContextCache(clock=clock)
    cert, key = install(pki.alice, tmp_path)
    tls = UpstreamTls(
        "MUTUAL", ca_certificates=str(pki.ca.path), client_certificate=cert, private_key=key
    )
    ctx, sni = cache.get_client(tls, host="upstream.test")
    assert sni == "upstream.test"
    assert cache.get_client(tls, host="other.test") == (ctx, "other.test")
    server = cache.get_server(
        DownstreamTls(
            "MUTUAL", credential_names=("u",), secrets={"u": pki.upstream.secret(ca=True)}
        )
    )
    first = handshake(server, ctx, "upstream.test")
    assert first.client_serial == pki.alice.serial
    install(pki.bob, tmp_path)
    clock.now += 2
    rotated, _ = cache.get_client(tls, host="upstream.test")
    assert rotated is not ctx
    second = handshake(server, rotated, "upstream.test")
    assert second.client_serial == pki.bob.serial
    assert first.roundtrip() == b"ping"
    first.close()
    second.close()
    with_secret, _ = cache.get_client(
        UpstreamTls("MUTUAL", credential_name="c"), secret=pki.bob.secret(ca=True)
    )
    assert (
        cache.get_client(
            UpstreamTls("MUTUAL", credential_name="c"), secret=pki.bob.secret(ca=True)
        )[0]
        is with_secret
    )
    assert (
        cache.get_client(
            UpstreamTls("MUTUAL", credential_name="c"), secret=pki.alice.secret(ca=True)
        )[0]
        is not with_secret
    )


def test_entries_are_bounded(pki: Pki) -> None:
    cache = ContextCache(max_entries=2)
    first = cache.get_server(secret_tls(pki.a))
    cache.get_server(secret_tls(pki.b))
    cache.get_server(secret_tls(pki.wild))
    assert len(cache) == 2
    assert cache.get_server(secret_tls(pki.a)) is not first
    cache.clear()
    assert len(cache) == 0


def test_istio_ca_is_used_for_istio_mutual(pki: Pki) -> None:
    tls = DownstreamTls(
        "ISTIO_MUTUAL", credential_names=("s",), secrets={"s": pki.server_ec.secret()}
    )
    with pytest.raises(TLSConfigError, match="mesh CA"):
        ContextCache().get_server(tls)
    ctx = ContextCache(istio_ca=str(pki.ca.path)).get_server(tls)
    cert = (str(pki.alice.cert_path), str(pki.alice.key_path))
    out = handshake(ctx, client_ctx(pki.ca.pem, cert=cert), "example.com")
    assert out.ok
    out.close()


def test_list_valued_settings_are_keyed_like_tuples(pki: Pki) -> None:
    cache = ContextCache()
    as_tuple = DownstreamTls(
        "MUTUAL",
        credential_names=("s",),
        secrets={"s": pki.server_ec.secret(ca=True)},
        subject_alt_names=("alice.test",),
    )
    as_list = DownstreamTls(
        "MUTUAL",
        credential_names=["s"],  # type: ignore[arg-type]
        secrets={"s": pki.server_ec.secret(ca=True)},
        subject_alt_names=["alice.test"],  # type: ignore[arg-type]
    )
    assert cache.get_server(as_list) is cache.get_server(as_tuple)
    up = UpstreamTls("SIMPLE", subject_alt_names=["a.test"])  # type: ignore[arg-type]
    assert (
        cache.get_client(up)[0]
        is cache.get_client(UpstreamTls("SIMPLE", subject_alt_names=("a.test",)))[0]
    )


def test_client_secret_attached_to_the_settings_is_keyed_by_digest(pki: Pki) -> None:
    cache = ContextCache()

    def tls(leaf: Leaf) -> UpstreamTls:
        return UpstreamTls(
            "MUTUAL", credential_name="c", secret=tuple(leaf.secret(ca=True).items())
        )

    first, _ = cache.get_client(tls(pki.alice))
    assert cache.get_client(tls(pki.alice))[0] is first
    assert cache.get_client(tls(pki.bob))[0] is not first
    assert cache.get_client(tls(pki.bob), secret=pki.alice.secret(ca=True))[0] is first
    assert all(b"PRIVATE KEY" not in repr(key).encode() for key in cache._entries)
