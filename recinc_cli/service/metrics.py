"""The service's Prometheus metrics (``GET /metrics``), on a registry of their own per app.

- ``recinc_requests_total{endpoint, status}``: requests answered, by route and HTTP status;
- ``recinc_request_seconds{endpoint}``: a latency histogram, 1 ms to 2.5 s;
- ``recinc_model_info{version, sha256, model}``: 1 for the version served now;
- ``recinc_model_loaded_timestamp_seconds``: when it was loaded;
- ``recinc_reloads_total{result}``: hot reloads, ``ok`` or ``refused``;
- ``recinc_batch_size``: how many ``GET /recommend`` requests each scoring batch held.

>>> m = Metrics()
>>> m.observe("/health", 200, 0.002)
>>> b"recinc_requests_total" in m.render()[0]
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Latency buckets (seconds): fine below 50 ms, where the targets are.
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Batch-size buckets: 1 (no load) up to the batcher's cap.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The counters of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recinc_requests", "Requests answered.", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "recinc_request_seconds", "Request latency.", ["endpoint"], buckets=BUCKETS, registry=self.registry
        )
        self.model = Gauge(
            "recinc_model_info", "The version served (1).", ["version", "sha256", "model"], registry=self.registry
        )
        self.loaded = Gauge(
            "recinc_model_loaded_timestamp_seconds", "When the version served was loaded.", registry=self.registry
        )
        self.reloads = Counter("recinc_reloads", "Hot reloads by result.", ["result"], registry=self.registry)
        self.batch = Histogram(
            "recinc_batch_size",
            "GET /recommend requests scored in one batch.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def serving(self, version: str, sha256: str, model: str, loaded_at: float) -> None:
        """Mark ``version`` as the one served (the previous label set is cleared)."""
        self.model.clear()
        self.model.labels(version, sha256, model).set(1)
        self.loaded.set(loaded_at)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
