"""``--source``: where ``run`` reads its config (files by default, a shared store in a fleet)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from isthmus.sources.base import ConfigSource, SourceState, SourceUnavailable
from isthmus.sources.files import FileSource


def add_source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config source")
    group.add_argument(
        "--source",
        default="files",
        metavar="SOURCE",
        help="files (the -f paths, watched; the default), kubernetes, or "
        "etcd://HOST:2379[,HOST:2379...]/PREFIX",
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
    raise SystemExit(
        f"isthmus: unknown --source {spec!r}: expected files, kubernetes or etcd://HOST:PORT/PREFIX"
    )


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
