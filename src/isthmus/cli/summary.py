"""What ``run`` prints on start: each listener, its routes and clusters, and the warnings."""

from __future__ import annotations

from isthmus.snapshot.types import HttpConnectionManager, Snapshot, TcpProxy
from isthmus.translate.diagnostics import Diagnostic


def summarize(snapshot: Snapshot, diagnostics: list[Diagnostic], sources: list[str]) -> list[str]:
    listeners = len(snapshot.listeners)
    lines = [
        f"config {snapshot.version} from {', '.join(sources)}: "
        f"{listeners} listener{'s' if listeners != 1 else ''}, "
        f"{len(snapshot.clusters)} cluster{'s' if len(snapshot.clusters) != 1 else ''}"
    ]
    for listener in snapshot.listeners:
        for chain in listener.filter_chains:
            app = chain.application
            if isinstance(app, TcpProxy):
                what = f"{len(app.routes)} TCP route{'s' if len(app.routes) != 1 else ''}"
            else:
                assert isinstance(app, HttpConnectionManager)
                hosts = [d for v in app.route_config.virtual_hosts for d in v.domains]
                what = f"hosts {', '.join(hosts) or 'none'}"
            tls = f" TLS {chain.tls.mode}" if chain.tls else ""
            sni = f" SNI {','.join(chain.server_names)}" if chain.server_names else ""
            lines.append(
                f"  {listener.address}:{listener.port} {listener.protocol}{tls}{sni} "
                f"(gateway port {listener.gateway_port}) {chain.name}: {what}"
            )
    for diag in diagnostics:
        if diag.level != "Info":
            lines.append(f"  {diag}")
    return lines
