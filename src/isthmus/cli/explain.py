"""``isthmus explain``: the chain a request or connection would follow, and why it stops."""

from __future__ import annotations

import argparse
import json

from isthmus.cli.common import add_config_args, identity_from, load_or_report
from isthmus.snapshot import Call, Result, simulate
from isthmus.translate import translate

STAGE_TITLES = {
    "listener": "listener",
    "filter_chain": "filter chain",
    "virtual_host": "virtual host",
    "route": "route",
    "cluster": "cluster",
    "endpoints": "endpoints",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explain", help="show where a request or connection would go")
    add_config_args(p)
    p.add_argument("--port", type=int, required=True, help="port the client connects to")
    p.add_argument("--host", help="Host header / authority")
    p.add_argument("--path", default="/", help="request path with optional ?query")
    p.add_argument("--method", default="GET")
    p.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--sni", help="TLS server name (implies --tls)")
    p.add_argument("--tls", action="store_true", help="the client speaks TLS")
    p.add_argument("--source-ip", default="127.0.0.1")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded, ok = load_or_report(args.paths)
    if not ok:
        return 1
    snapshot, _diags = translate(loaded.resources, identity_from(args))
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"isthmus: --header expects NAME=VALUE, got {item!r}")
        headers[name.lower()] = value
    call = Call(
        port=args.port,
        host=args.host,
        path=args.path,
        method=args.method,
        headers=headers,
        sni=args.sni,
        tls=bool(args.tls or args.sni),
        source_ip=args.source_ip,
    )
    result = simulate(snapshot, call)
    if args.output == "json":
        print(json.dumps(to_json(result), indent=2))
    else:
        print(render(result))
    return 0 if result.outcome != "no_match" else 1


def render(result: Result) -> str:
    lines = []
    for step in result.steps:
        origin = ", ".join(f"{o} ({o.location})" if o.location else str(o) for o in step.origins)
        title = STAGE_TITLES[step.stage]
        lines.append(f"{title:<13} {step.name}")
        if step.detail:
            lines.append(f"{'':<13}   {step.detail}")
        if origin:
            lines.append(f"{'':<13}   from {origin}")
    if result.outcome == "no_match":
        lines.append(f"✘ {STAGE_TITLES.get(result.failed_stage or '', 'match')}: {result.reason}")
    elif result.outcome != "routed":
        lines.append(f"→ {result.reason}")
    return "\n".join(lines)


def to_json(result: Result) -> dict[str, object]:
    return {
        "outcome": result.outcome,
        "failed_stage": result.failed_stage,
        "reason": result.reason,
        "steps": [
            {
                "stage": s.stage,
                "name": s.name,
                "detail": s.detail,
                "origins": [{"resource": str(o), "location": o.location} for o in s.origins],
            }
            for s in result.steps
        ],
        "clusters": [
            {"name": d.cluster, "weight": d.weight, "share": d.share} for d in result.destinations
        ],
    }
