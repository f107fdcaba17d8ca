"""``--source``: where ``run`` reads its config (files by default, a shared store in a fleet)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from isthmus.sources.base import ConfigSource, SourceState, SourceUnavailable
from isthmus.sources.files import FileSource
from isthmus.sources.statefile import SPEC_PREFIX, StateFileSource

if TYPE_CHECKING:
    from isthmus.sources.etcd import EtcdTarget


def add_source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config source")
    group.add_argument(
        "--source",
        default="files",
        metavar="SOURCE",
        help="files (the -f paths, watched; the default), kubernetes, or "
        "etcd://HOST:2379[,HOST:2379...]/PREFIX",
    )
    group.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="with --source kubernetes: the kubeconfig to use (default $KUBECONFIG, else the "
        "pod's service account, else ~/.kube/config)",
    )
    group.add_argument(
        "--watch-namespace",
        action="append",
        metavar="NS",
        help="with --source kubernetes: read only these namespaces (repeatable or NS,NS; "
        "the gateway's own namespace is always read; default all namespaces). Secrets are "
        "read in the gateway's namespace only",
    )


def open_source(args: argparse.Namespace) -> ConfigSource:
    """The source ``args`` name; exits with a usage message when it cannot be used."""
    spec: str = args.source
    if spec == "files":
        if not args.paths:
            raise SystemExit("isthmus: run needs -f PATH (or --source kubernetes|etcd://...)")
        return FileSource(args.paths, args.reload_quiet_ms, args.reload_max_delay_ms)
    if args.paths:
        raise SystemExit(f"isthmus: -f cannot be combined with --source {spec}")
    if spec == "kubernetes":
        return open_kubernetes(args)
    if spec.startswith("etcd://"):
        from isthmus.sources.etcd import EtcdSource

        return EtcdSource(etcd_target(spec))
    if spec.startswith(SPEC_PREFIX):  # a --workers supervisor's state, for its workers
        return StateFileSource(spec.removeprefix(SPEC_PREFIX))
    raise SystemExit(
        f"isthmus: unknown --source {spec!r}: expected files, kubernetes or etcd://HOST:PORT/PREFIX"
    )


def open_kubernetes(args: argparse.Namespace) -> ConfigSource:
    from isthmus.sources.kubernetes import KubeConfigError, KubernetesSource

    namespaces = [ns for item in args.watch_namespace or [] for ns in item.split(",") if ns]
    try:
        return KubernetesSource.connect(args.kubeconfig, args.namespace, namespaces)
    except KubeConfigError as exc:
        raise SystemExit(f"isthmus: {exc}") from None


def etcd_target(spec: str) -> EtcdTarget:
    from isthmus.sources.etcd import parse_target

    try:
        return parse_target(spec)
    except ValueError as exc:
        raise SystemExit(f"isthmus: --source: {exc}") from None


async def first_state(source: ConfigSource, quiet: bool) -> SourceState:
    """The first readable state of a store, retrying with backoff while it is unreachable."""
    delay = 0.2
    while True:
        try:
            return await source.current()
        except SourceUnavailable as exc:
            print(
                f"isthmus: {source.describe()}: {exc}; retrying in {delay:g}s",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
