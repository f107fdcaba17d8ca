"""``isthmus apply|delete -f PATH --source etcd://…``: change a fleet's shared config the way
``kubectl apply``/``delete`` changes a cluster's, validated first and written at once.

The etcd client is imported only when one of these runs (every other command skips gRPC)."""

from __future__ import annotations

import argparse
import asyncio

from isthmus.cli.common import add_config_args


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apply = sub.add_parser(
        "apply", help="write resources to a config store (validated; one transaction)"
    )
    add_store_args(apply)
    apply.set_defaults(func=run_apply, ignore_not_found=False)
    delete = sub.add_parser(
        "delete", help="remove resources from a config store (validated; one transaction)"
    )
    add_store_args(delete)
    delete.add_argument(
        "--ignore-not-found", action="store_true", help="a resource not in the store is no error"
    )
    delete.set_defaults(func=run_delete)


def add_store_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument(
        "--source",
        required=True,
        metavar="etcd://HOST:2379[,HOST:2379...]/PREFIX",
        help="the store the gateways watch",
    )


def run_apply(args: argparse.Namespace) -> int:
    from isthmus.cli.store_write import write
    from isthmus.sources.etcd_apply import plan_apply

    return asyncio.run(write(args, plan_apply))


def run_delete(args: argparse.Namespace) -> int:
    from isthmus.cli.store_write import write
    from isthmus.sources.etcd_apply import plan_delete

    return asyncio.run(write(args, plan_delete))
