"""Prometheus metrics of the producer and the scheduler fleet, per source.

A source's gauges are exported by the replica that runs it: set from the runs topic when the
source comes to the replica (so that a move does not reset them), updated after each run, and
removed when the source leaves, so that ``max by (source)`` over the replicas is the truth.
Counters and the duration histogram stay with the replica that counted them.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.errors import BrokerError, ParseError, PipelineError, PublishError, SourceError
from producer.publish import RunInterrupted
from producer.run import RunSummary
from producer.runs import RunInfo
from producer.slots import Schedule

logger = logging.getLogger(__name__)

STATUSES = ("succeeded", "unchanged", "suspicious", "failed", "interrupted", "skipped")


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


def deletions(summary: RunSummary) -> int:
    """ISINs the run deletes (at least): only a run that published its end-of-run markers deletes."""
    if not summary.markers or not summary.shrink:
        return 0
    return int(summary.shrink.get("deletions_at_least") or 0)


def interval_s(schedule: Schedule, now: datetime) -> float:
    """The schedule's current interval: the longer of the gaps before and after its latest slot.

    For ``every`` it is the interval; for a cron it is exact on regular days and the longer gap
    around a pause (Friday's slot of a weekday cron has 72 h), so "no success for longer than
    the interval plus a grace" never fires before a slot was missed.
    """
    if schedule.every_s is not None:
        return schedule.every_s
    latest = schedule.latest(now)
    before = latest - _previous(schedule, latest)
    after = schedule.next_after(latest) - latest
    return max(before, after).total_seconds()


def _previous(schedule: Schedule, slot: datetime) -> datetime:
    return schedule.latest(slot - timedelta(microseconds=1))


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
        self.runs_source = Gauge(
            "isin_pipeline_scheduler_runs_source",
            "1 while this replica runs the source (owns its partition of the scheduler topic).",
            ["source"],
            registry=r,
        )
        # -- per-source health, exported by the replica that runs the source ---------------
        self.last_status = Gauge(
            "isin_pipeline_run_last_status",
            "1 for the status of the source's last run, 0 for the others.",
            ["source", "status"],
            registry=r,
        )
        self.last_published = Gauge(
            "isin_pipeline_run_published_rows", "ISIN events published by the last run.", ["source"], registry=r
        )
        self.last_deleted = Gauge(
            "isin_pipeline_run_deleted_rows",
            "ISINs the last run deletes (at least): 0 unless it published its end-of-run markers.",
            ["source"],
            registry=r,
        )
        self.last_duration = Gauge(
            "isin_pipeline_run_last_duration_seconds", "Duration of the last run.", ["source"], registry=r
        )
        self.next_slot = Gauge(
            "isin_pipeline_source_next_slot_timestamp_seconds", "The source's next slot.", ["source"], registry=r
        )
        self.interval = Gauge(
            "isin_pipeline_source_interval_seconds",
            "The source's schedule interval (a cron's longer gap around its latest slot), for alerting.",
            ["source"],
            registry=r,
        )
        self.partitions = Gauge(
            "isin_pipeline_scheduler_partitions",
            "Partitions of the scheduler topic assigned to this replica.",
            registry=r,
        )
        self.sources = Gauge("isin_pipeline_scheduler_sources", "Sources this replica runs.", registry=r)
        self.reloads = Counter(
            "isin_pipeline_sources_reloads",
            "Changes of the sources file seen while running: applied, or refused (invalid).",
            ["result"],
            registry=r,
        )
        self.sources_file_valid = Gauge(
            "isin_pipeline_sources_file_valid",
            "0 while the sources file on disk is invalid and the last good one stays in force.",
            registry=r,
        )

    _PER_SOURCE = (
        "last_success",
        "rows",
        "valid",
        "invalid",
        "last_published",
        "last_deleted",
        "last_duration",
        "next_slot",
        "interval",
    )

    def observe(self, summary: RunSummary, exc: BaseException | None = None) -> None:
        source = summary.source
        self.runs.labels(source, summary.status).inc()
        if summary.status != "skipped":
            for status in STATUSES[:-1]:
                self.last_status.labels(source, status).set(1 if status == summary.status else 0)
        if summary.status in ("failed", "interrupted"):
            self.failures.labels(source, failure_reason(exc)).inc()
            return
        if summary.status == "suspicious":
            self.failures.labels(source, "doubt").inc()
        if summary.status in ("succeeded", "unchanged"):
            self.last_success.labels(source).set_to_current_time()
        if summary.status in ("succeeded", "suspicious"):
            self.duration.labels(source).observe(summary.duration_s)
            self.last_duration.labels(source).set(summary.duration_s)
            self.rows.labels(source).set(summary.rows)
            self.valid.labels(source).set(summary.valid)
            self.invalid.labels(source).set(summary.invalid)
            self.published.labels(source).inc(summary.published)
            self.last_published.labels(source).set(summary.published)
            self.last_deleted.labels(source).set(deletions(summary))
        if summary.status == "unchanged":
            self.last_published.labels(source).set(0)
            self.last_deleted.labels(source).set(0)

    def schedule(self, source: str, schedule: Schedule, now: datetime) -> None:
        """The source's next slot and interval (after each decision about it)."""
        self.next_slot.labels(source).set(schedule.next_after(schedule.latest(now)).timestamp())
        self.interval.labels(source).set(interval_s(schedule, now))

    def gain(self, source: str, last: RunInfo | None, last_ok: RunInfo | None, deleted: int) -> None:
        """The source came to this replica: its health as the runs topic remembers it."""
        self.runs_source.labels(source).set(1)
        if last_ok is not None:
            self.last_success.labels(source).set((last_ok.finished_at or last_ok.started_at) / 1000)
        if last is None:
            return
        status = last.status.lower()
        for known in STATUSES[:-1]:
            self.last_status.labels(source, known).set(1 if known == status else 0)
        if last.finished_at is not None and status in ("succeeded", "suspicious"):
            self.last_duration.labels(source).set((last.finished_at - last.started_at) / 1000)
            self.rows.labels(source).set(last.rows)
            self.valid.labels(source).set(last.valid)
            self.invalid.labels(source).set(last.invalid)
            self.last_published.labels(source).set(last.published)
            self.last_deleted.labels(source).set(deleted)

    def lose(self, source: str) -> None:
        """The source left this replica (moved, removed or disabled): its gauges go with it."""
        self.runs_source.labels(source).set(0)
        for name in self._PER_SOURCE:
            gauge: Gauge = getattr(self, name)
            _remove(gauge, source)
        for status in STATUSES[:-1]:
            _remove(self.last_status, source, status)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
        logger.info("metrics on http://%s:%d/metrics", host, port)


def _remove(gauge: Gauge, *labels: str) -> None:
    with suppress(KeyError):  # never set on this replica
        gauge.remove(*labels)
