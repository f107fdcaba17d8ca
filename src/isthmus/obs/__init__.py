"""Observability: Istio's metrics, Envoy's access log, and the admin API.

* :mod:`isthmus.obs.metrics` — ``istio_*`` metrics counted in plain integers on the request
  path and turned into Prometheus text only when scraped; worker states merge by addition
  (:mod:`isthmus.obs.exposition`), isthmus's own gauges are read at scrape time
  (:mod:`isthmus.obs.gauges`).
* :mod:`isthmus.obs.accesslog` — Envoy's default access log (text or Istio's JSON), formatted
  and written by a background thread so the event loop never waits on a slow reader.
* :mod:`isthmus.obs.admin` — the admin (15000), status (15021) and metrics (15090) ports:
  ``/config_dump``, ``/clusters``, ``/stats``, ``/stats/prometheus``, ``/ready``,
  ``/healthz/ready``.

This package reads the snapshot and the read-only views of :mod:`isthmus.obs.views`; it never
imports the model, the translator, or the data plane beyond its certificate parser.

Wiring, in the data plane (``metrics`` and ``log`` may be ``None``: then do nothing)::

    metrics = Metrics(workload="istio-ingressgateway", namespace=identity.namespace,
                      labels=identity.workload_labels, sources=Sources(...))
    metrics.set_snapshot(snapshot)                # at start and on every publish

    # an HTTP request finished (cluster "" and upstream "" when there were none)
    metrics.http(cluster.name, endpoint_state.key, status, flags, duration_ms,
                 request_bytes, response_bytes)
    if log is not None:
        log.http(HttpEntry(start_time, method, path, "HTTP/1.1", status, flags,
                           body_bytes_received, body_bytes_sent, duration_ms, authority,
                           downstream_local, downstream_remote, upstream_host=...))

    # a TCP connection: tcp_open when relayed, tcp_close when it ends;
    # tcp_failed(cluster, upstream, "UF") when it never reached an upstream
    series = metrics.tcp_open(cluster.name, endpoint_state.key)
    metrics.tcp_close(series, sent_to_client, received_from_client)

and in the CLI: ``await admin.start(provider, admin=..., status=..., metrics=...)`` with an
:class:`isthmus.obs.admin.AdminProvider`, and ``AccessLog("text"|"json")`` unless
``--access-log off``; ``log.close()`` at shutdown.
"""
