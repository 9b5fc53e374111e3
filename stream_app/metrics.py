"""Prometheus metrics of a stream worker, served at ``GET /metrics``.

Counters follow the dedup loop's committed work; gauges (lag, table size) are computed when
scraped, from what the worker knows at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_app.dedup_io import DedupStats


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.query_latency = Histogram(
            "isin_stream_query_duration_seconds",
            "HTTP API latency, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.queries = Counter(
            "isin_stream_queries", "HTTP API requests, by route and status.", ["route", "status"], registry=r
        )

    def register_state(
        self,
        stats: Callable[[], DedupStats],
        lag: Callable[[], Mapping[int, int]],
        table_size: Callable[[], Mapping[int, int]],
        conflicts: Callable[[], Mapping[tuple[str, str, str], int]] = dict,
    ) -> None:
        """Expose the dedup counters, consumer lag, table size and conflict counts, read at scrape time."""
        self.registry.register(_StateCollector(stats, lag, table_size, conflicts))


class _StateCollector(Collector):
    def __init__(
        self,
        stats: Callable[[], DedupStats],
        lag: Callable[[], Mapping[int, int]],
        table_size: Callable[[], Mapping[int, int]],
        conflicts: Callable[[], Mapping[tuple[str, str, str], int]],
    ) -> None:
        self._stats = stats
        self._lag = lag
        self._size = table_size
        self._conflicts = conflicts

    def collect(self) -> Iterable[Metric]:
        s = self._stats()
        events = CounterMetricFamily("isin_stream_events", "Raw ISIN events processed (committed).")
        events.add_metric([], s.events)
        yield events
        changes = CounterMetricFamily(
            "isin_stream_changes", "Records written to the compacted topic, by kind.", labels=["kind"]
        )
        changes.add_metric(["new"], s.new)
        changes.add_metric(["changed"], s.changed)
        changes.add_metric(["deleted"], s.deleted)
        yield changes
        unchanged = CounterMetricFamily("isin_stream_unchanged", "Events that changed nothing.")
        unchanged.add_metric([], s.unchanged)
        yield unchanged
        dlq = CounterMetricFamily(
            "isin_stream_dead_letters", "Raw records the worker could not process, sent to the dead-letter topic."
        )
        dlq.add_metric([], s.rejected)
        yield dlq
        sweeps = CounterMetricFamily("isin_stream_sweeps", "End-of-run sweeps, by outcome.", labels=["outcome"])
        sweeps.add_metric(["done"], s.sweeps)
        sweeps.add_metric(["skipped"], s.sweeps_skipped)
        yield sweeps
        lag = GaugeMetricFamily(
            "isin_stream_consumer_lag", "Raw records not yet processed, per partition.", labels=["partition"]
        )
        for partition, value in sorted(self._lag().items()):
            lag.add_metric([str(partition)], value)
        yield lag
        size = GaugeMetricFamily(
            "isin_stream_table_isins", "ISINs in the table, per partition this worker owns.", labels=["partition"]
        )
        for partition, value in sorted(self._size().items()):
            size.add_metric([str(partition)], value)
        yield size
        conflicts = GaugeMetricFamily(
            "isin_stream_conflicts",
            "Records of this worker's partitions whose two sources disagree on a field, by field and source pair.",
            labels=["field", "source", "other_source"],
        )
        for (field, source, other), value in sorted(self._conflicts().items()):
            conflicts.add_metric([field, source, other], value)
        yield conflicts
