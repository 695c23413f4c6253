"""Prometheus metrics: a registry per app (tests build many apps), request counters and latency
histograms recorded by an ASGI middleware, and gauges read from live state at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # *_created gauges only add noise to the exposition
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
STORE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5)


class LiveState(Collector):
    """Gauges and counters owned by other objects (queue, style cache, model), read when scraped."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        v = self.read()
        yield GaugeMetricFamily("adain_queue_depth", "requests waiting for a model worker", value=v["queue_depth"])
        yield GaugeMetricFamily("adain_in_flight", "requests being processed by a model worker", value=v["in_flight"])
        yield CounterMetricFamily("adain_style_cache_hits", "style codes found in the cache", value=v["cache_hits"])
        yield CounterMetricFamily("adain_style_cache_misses", "style codes encoded", value=v["cache_misses"])
        yield GaugeMetricFamily("adain_style_cache_entries", "style codes held", value=v["cache_entries"])
        yield CounterMetricFamily("adain_content_cache_hits", "renders whose content features were kept (the "
                                  "decoder alone ran)", value=v["content_hits"])
        yield CounterMetricFamily("adain_content_cache_misses", "renders that encoded their content",
                                  value=v["content_misses"])
        yield GaugeMetricFamily("adain_content_cache_bytes", "bytes of content features kept",
                                value=v["content_bytes"])
        yield GaugeMetricFamily("adain_model_load_seconds", "time to load weights at startup", value=v["load_seconds"])
        yield GaugeMetricFamily("adain_ready", "1 once weights are loaded and warm", value=v["ready"])
        yield GaugeMetricFamily("adain_video_jobs_running", "video segments rendering on this replica",
                                value=v["video_jobs"])
        yield GaugeMetricFamily("adain_live_streams", "WebSocket streams open", value=v["live_streams"])
        yield GaugeMetricFamily("adain_video_jobs_waiting", "video jobs accepted by this replica, not finished",
                                value=v["video_jobs_waiting"])
        yield GaugeMetricFamily("adain_buffered_bytes", "request body bytes held by requests in flight "
                                "(bounded by ADAIN_MAX_BUFFERED_BYTES)", value=v["buffered_bytes"])
        yield GaugeMetricFamily("adain_anonymous_streams", "WebSockets open that have not said who they are",
                                value=v["anonymous_streams"])


class Metrics:
    """``tenants``: the configured tenants' names, the only values the tenant label takes (so its
    cardinality is the configuration's, whatever callers send)."""

    def __init__(self, read_state: Callable[[], dict[str, float]], tenants: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.tenants = set(tenants)
        self.tenant_requests = Counter("adain_tenant_requests", "HTTP requests and streams by tenant",
                                       ["tenant", "status"], registry=self.registry)
        self.throttled = Counter("adain_tenant_throttled", "429 answers by tenant: over its rate, or its share of "
                                 "the queue", ["tenant", "reason"], registry=self.registry)
        self.model_seconds = Counter("adain_tenant_model_seconds", "seconds the model worked for each tenant",
                                     ["tenant"], registry=self.registry)
        self.rate_limit_errors = Counter("adain_rate_limit_errors", "rate checks let through because their store "
                                         "(Redis) could not be reached", registry=self.registry)
        self.requests = Counter("adain_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("adain_request_seconds", "HTTP request latency", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("adain_batch_size", "images per network pass (micro-batching)",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.stages = Histogram("adain_stage_seconds", "time per stylization stage", ["stage"],
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_seconds = Histogram("adain_store_seconds", "style store call latency", ["op"],
                                       buckets=STORE_BUCKETS, registry=self.registry)
        self.store_errors = Counter("adain_store_errors", "style store calls that failed", ["op"],
                                    registry=self.registry)
        self.version_requests = Counter("adain_model_version_requests", "stylize requests by decoder version and "
                                        "outcome (ok, or the error's status)", ["version", "outcome"],
                                        registry=self.registry)
        self.version_seconds = Histogram("adain_model_version_seconds", "stylize latency by decoder version: a "
                                         "canary against the default", ["version"], buckets=LATENCY_BUCKETS,
                                         registry=self.registry)
        self.registry.register(LiveState(read_state))

    def version_done(self, version: str, outcome: str, seconds: float) -> None:
        """A stylize request's end, by the decoder version it ran with (versions are the store's
        names: a bounded label)."""
        self.version_requests.labels(version, outcome).inc()
        if outcome == "ok":
            self.version_seconds.labels(version).observe(seconds)

    def stage(self, name: str, seconds: float) -> None:
        self.stages.labels(name).observe(seconds)

    def model_time(self, tenant: str, seconds: float) -> None:
        if tenant in self.tenants:
            self.model_seconds.labels(tenant).inc(seconds)

    def store_call(self, op: str, seconds: float, ok: bool) -> None:
        self.store_seconds.labels(op).observe(seconds)
        if not ok:
            self.store_errors.labels(op).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every response by route template (not raw path: bounded label values) and status.
    ``paths``: raw paths counted as themselves when a middleware answers before routing (the early
    503 of EarlyBusyMiddleware), which would otherwise all be "other"."""

    def __init__(self, app: ASGIApp, metrics: Metrics, paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or (scope["path"] if scope["path"] in self.paths
                                                                  else "other")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            tenant = scope.get("state", {}).get("tenant")
            if tenant in self.metrics.tenants:
                self.metrics.tenant_requests.labels(tenant, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
