"""``isthmus analyze``: Istio-style findings; exit 1 when any is an error."""

from __future__ import annotations

import argparse
import json

from isthmus.analyze import analyze
from isthmus.cli.common import add_config_args, identity_from, load_or_report


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="find mistakes in Istio/Kubernetes YAML")
    add_config_args(p)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--verbose", action="store_true", help="also print info notes from loading")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded, ok = load_or_report(args.paths)
    if args.verbose:
        for note in loaded.notes:
            print(f"Info: {note}")
    findings = analyze(loaded.resources, identity_from(args))
    if args.output == "json":
        print(json.dumps([f.to_dict() for f in findings], indent=2))
    elif findings:
        for finding in findings:
            print(finding)
    elif ok:
        print(
            f"✔ No validation issues found when analyzing {len(loaded.resources.all())} resources."
        )
    has_error = any(f.level == "Error" for f in findings)
    return 1 if has_error or not ok else 0
