"""Prometheus metrics of the producer and the scheduler."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.errors import BrokerError, ParseError, PipelineError, PublishError, SourceError
from producer.publish import RunInterrupted
from producer.run import RunSummary

logger = logging.getLogger(__name__)


def failure_reason(exc: BaseException | None) -> str:
    """A small, fixed set of label values: what kind of thing failed."""
    for kind, label in (
        (RunInterrupted, "interrupted"),
        (SourceError, "download"),
        (ParseError, "parse"),
        (BrokerError, "broker"),
        (PublishError, "publish"),
        (PipelineError, "other"),
    ):
        if isinstance(exc, kind):
            return label
    return "other"


class RunMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter("isin_pipeline_runs", "Runs by final status.", ["source", "status"], registry=r)
        self.failures = Counter(
            "isin_pipeline_run_failures", "Failed or suspicious runs by reason.", ["source", "reason"], registry=r
        )
        self.last_success = Gauge(
            "isin_pipeline_run_last_success_timestamp_seconds",
            "When the last successful or unchanged run of the source finished.",
            ["source"],
            registry=r,
        )
        self.duration = Histogram(
            "isin_pipeline_run_duration_seconds",
            "Run duration, download to commit.",
            ["source"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
            registry=r,
        )
        self.rows = Gauge("isin_pipeline_run_rows", "Rows read in the last run.", ["source"], registry=r)
        self.valid = Gauge("isin_pipeline_run_valid_rows", "Valid rows in the last run.", ["source"], registry=r)
        self.invalid = Gauge(
            "isin_pipeline_run_invalid_rows", "Rows dead-lettered in the last run.", ["source"], registry=r
        )
        self.published = Counter(
            "isin_pipeline_rows_published", "ISIN events published (committed runs).", ["source"], registry=r
        )
        self.leader = Gauge(
            "isin_pipeline_scheduler_leader", "1 while this replica is the scheduler's leader.", ["source"], registry=r
        )

    def observe(self, summary: RunSummary, exc: BaseException | None = None) -> None:
        source = summary.source
        self.runs.labels(source, summary.status).inc()
        if summary.status in ("failed", "interrupted"):
            self.failures.labels(source, failure_reason(exc)).inc()
            return
        if summary.status == "suspicious":
            self.failures.labels(source, "doubt").inc()
        if summary.status in ("succeeded", "unchanged"):
            self.last_success.labels(source).set_to_current_time()
        if summary.status in ("succeeded", "suspicious"):
            self.duration.labels(source).observe(summary.duration_s)
            self.rows.labels(source).set(summary.rows)
            self.valid.labels(source).set(summary.valid)
            self.invalid.labels(source).set(summary.invalid)
            self.published.labels(source).inc(summary.published)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
        logger.info("metrics on http://%s:%d/metrics", host, port)
