"""Operating the server: probes, metrics, a log line per request, and the log format.

- :mod:`.metrics`: the Prometheus metrics, in a registry of their own per app (several apps in one process never
  collide), and the Integrate client that feeds them.
- :mod:`.probes`: ``/healthz``, ``/readyz`` and ``/metrics``.
- :mod:`.access_log`: the middleware that logs and times every HTTP request.
- :mod:`.logs`: JSON lines on stderr, written by a thread of their own, with every credential redacted.
"""
