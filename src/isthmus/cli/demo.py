"""``isthmus demo``: Istio's TCP traffic shifting task on this machine, ready to try."""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from isthmus.cli.run import report_rejected, run_loop, wait_for_signal
from isthmus.cli.summary import summarize
from isthmus.control.build import build
from isthmus.dataplane.server import BindError, Gateway, ServeOptions
from isthmus.samples.tcp_echo import start_tcp_echo
from isthmus.translate.identity import GatewayIdentity

DEMO_CONFIG = str(resources.files("isthmus.samples") / "demo")
SAMPLES = (("one", 9001), ("two", 9002))  # the WorkloadEntries' ports in the demo config

TRY = """
Try it: 80% of new connections answer "one", 20% "two".

  for i in $(seq 100); do echo hello | nc -q1 127.0.0.1 31400; done | sort | uniq -c

or, without nc:

  python3 -c "
import socket, collections
def once():
    s = socket.create_connection(('127.0.0.1', 31400)); s.sendall(b'hello\\n')
    return s.makefile().readline().split()[0]
print(collections.Counter(once() for _ in range(200)))"

Explain the routing offline:  isthmus explain -f {config} --port 31400
Stop with Ctrl-C.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the bundled example with its sample backends")
    p.add_argument("--bind", default="127.0.0.1", help="address for the gateway (127.0.0.1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = build([DEMO_CONFIG], GatewayIdentity())
    if result.snapshot is None:
        report_rejected(result)
        return 1
    for line in summarize(result.snapshot, result.diagnostics, [DEMO_CONFIG]):
        print(line)
    gateway = Gateway(result.snapshot, ServeOptions(bind=args.bind))

    async def main() -> int:
        servers = [await start_tcp_echo(port, prefix) for prefix, port in SAMPLES]
        for prefix, port in SAMPLES:
            print(f"  sample tcp-echo '{prefix}' on 127.0.0.1:{port}")
        try:
            await gateway.start()
            print(TRY.format(config=DEMO_CONFIG), flush=True)
            await wait_for_signal()
            await gateway.close(1.0)
        finally:
            for server in servers:
                server.close()
        return 0

    try:
        return run_loop(main())
    except (BindError, OSError) as exc:
        print(f"isthmus demo: {exc}", file=sys.stderr)
        return 1
