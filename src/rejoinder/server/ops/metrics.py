"""The server's Prometheus metrics, fed where the work happens.

The client API times turns and resumes, :class:`MeteredIntegrationClient` times Integrate calls, and the access
log times every request. Each app has a registry of its own, so several apps in one process never collide.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from rejoinder.engine import HttpCall, HttpResponse
from rejoinder.integrations import IntegratePolicy, IntegrationClient

# Set by `rejoinder serve --workers N` for its workers: prometheus-client then keeps every metric in files there,
# and any worker's /metrics answers for all of them.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The server's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = self.registry
        self.turns = Counter(
            "rejoinder_turns",
            "Conversation turns run, by bot and kind (start or message).",
            ["bot", "kind"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "rejoinder_turn_duration_seconds",
            "Time to run and save one turn.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.resumes = Counter(
            "rejoinder_resumes",
            "Resume attempts by bot and outcome (ok or the problem type).",
            ["bot", "outcome"],
            registry=r,
        )
        self.resume_seconds = Histogram(
            "rejoinder_resume_duration_seconds",
            "Time to verify a token and load its conversation.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.integrate_calls = Counter(
            "rejoinder_integrate_calls",
            "Integrate calls by outcome: ok (2xx), http_error (other status) or error (no usable answer).",
            ["outcome"],
            registry=r,
        )
        self.integrate_seconds = Histogram(
            "rejoinder_integrate_duration_seconds",
            "Integrate call time, retries included.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Histogram(
            "rejoinder_http_request_duration_seconds",
            "HTTP request time by method, route template and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: label sets are few, and each labels() call takes a lock."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    @contextmanager
    def turn(self, bot_id: str, kind: str) -> Iterator[None]:
        """Count and time a turn; a turn that raises is timed but not counted."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.child(self.turn_seconds, kind).observe(time.perf_counter() - started)
        self.child(self.turns, bot_id, kind).inc()

    def resume(self, bot_id: str, outcome: str, seconds: float) -> None:
        self.child(self.resumes, bot_id, outcome).inc()
        self.resume_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text format: this process's metrics, or every worker's when they share a multiprocess directory."""
        if MULTIPROCESS_DIR_ENV in os.environ:
            gathered = CollectorRegistry()
            multiprocess.MultiProcessCollector(gathered)
            return generate_latest(gathered)
        return generate_latest(self.registry)


class MeteredIntegrationClient(IntegrationClient):
    """The Integrate client, counting and timing every call by outcome."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def perform(self, call: HttpCall, policy: IntegratePolicy) -> HttpResponse:
        response = await super().perform(call, policy)
        outcome = "ok" if response.ok else "error" if response.error is not None else "http_error"
        self.metrics.child(self.metrics.integrate_calls, outcome).inc()
        self.metrics.integrate_seconds.observe(response.elapsed_ms / 1000)
        return response
