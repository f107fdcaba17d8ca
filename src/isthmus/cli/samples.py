"""``isthmus samples tcp-echo|http-echo``: the sample backends demos and tests use."""

from __future__ import annotations

import argparse

from isthmus.samples.http_echo import run_http_echo
from isthmus.samples.tcp_echo import run_tcp_echo


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("samples", help="run a sample backend")
    kinds = p.add_subparsers(dest="sample", required=True, metavar="SAMPLE")
    tcp = kinds.add_parser("tcp-echo", help="answer each line with '<prefix> <line>'")
    tcp.add_argument("--port", type=int, default=9000)
    tcp.add_argument("--prefix", default="one")
    tcp.add_argument("--host", default="127.0.0.1")
    tcp.set_defaults(func=lambda a: _tcp(a))
    http = kinds.add_parser("http-echo", help="answer each HTTP request with what it received")
    http.add_argument("--port", type=int, default=8080)
    http.add_argument("--name", default="http-echo")
    http.add_argument("--host", default="127.0.0.1")
    http.set_defaults(func=lambda a: _http(a))


def _tcp(args: argparse.Namespace) -> int:
    print(f"tcp-echo '{args.prefix}' on {args.host}:{args.port}", flush=True)
    run_tcp_echo(args.port, args.prefix, args.host)
    return 0


def _http(args: argparse.Namespace) -> int:
    print(f"http-echo '{args.name}' on {args.host}:{args.port}", flush=True)
    run_http_echo(args.port, args.name, args.host)
    return 0
