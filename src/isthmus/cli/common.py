"""Flags and loading shared by every subcommand."""

from __future__ import annotations

import argparse
import sys

from isthmus.model import LoadResult, load
from isthmus.translate.identity import DEFAULT_LABELS, DEFAULT_NAMESPACE, GatewayIdentity


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=required,
        metavar="PATH",
        help="YAML file or directory (repeatable, like kubectl)",
    )
    add_identity_args(parser)


def add_identity_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway identity")
    group.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"namespace of the gateway workload (default {DEFAULT_NAMESPACE})",
    )
    default = ",".join(f"{k}={v}" for k, v in DEFAULT_LABELS.items())
    group.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=f"label of the gateway workload, repeatable (default {default})",
    )
    group.add_argument("--revision", default=None, help="istio.io/rev of this gateway")


def identity_from(args: argparse.Namespace) -> GatewayIdentity:
    labels = dict(DEFAULT_LABELS)
    if args.label:
        labels = {}
        for item in args.label:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"isthmus: --label expects KEY=VALUE, got {item!r}")
            labels[key] = value
    # `--revision=` (empty) is no revision: deploy/ passes the pod's istio.io/rev label, empty
    # when the pod has none.
    return GatewayIdentity(args.namespace, labels, args.revision or None)


def load_or_report(paths: list[str]) -> tuple[LoadResult, bool]:
    """Load; print every load error to stderr.  Returns (result, ok)."""
    result = load(paths)
    for error in result.errors:
        print(f"Error: {error}", file=sys.stderr)
    return result, not result.errors
