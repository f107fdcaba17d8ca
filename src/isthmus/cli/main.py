"""Entry point: parse arguments and call the subcommand's ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from isthmus import __version__
from isthmus.cli import analyze, apply, demo, explain, proxy_config, run, samples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isthmus",
        description="An Istio-compatible gateway: Istio networking YAML in, traffic out.",
    )
    parser.add_argument("--version", action="version", version=f"isthmus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    analyze.register(sub)
    explain.register(sub)
    run.register(sub)
    apply.register(sub)
    samples.register(sub)
    demo.register(sub)
    proxy_config.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
