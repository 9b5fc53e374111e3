"""The scheduler fleet's settings, read once from the environment by its entry point.

A scheduler runs producer runs, so its settings are the producer's and its own."""

from __future__ import annotations

from pydantic import Field

from core.kafka.topics import TopicSpec
from producer.settings import ProducerSettings


class SchedulerSettings(ProducerSettings):
    scheduler_session_timeout_s: float = Field(default=6.0, gt=0)
    """How long a dead scheduler replica keeps its sources before the others take them over."""
    scheduler_partitions: int = Field(default=12, ge=1)
    """Partitions of the scheduler fleet's coordination topic: each source maps to one by a
    stable hash of its name, and a replica runs the sources of the partitions it is assigned.
    More partitions than replicas, so that sources spread evenly."""
    scheduler_group: str | None = None
    """The fleet's consumer group (default ``<TOPIC_RUNS>.schedulers``): one per sources file."""
    scheduler_reload_poll_s: float = Field(default=5.0, gt=0)
    """How often a scheduler checks its sources file for changes (its mtime and hash)."""

    def topics(self) -> list[TopicSpec]:
        """The topics a scheduler writes: the producer's, and the fleet's coordination topic."""
        return [*super().topics(), self.scheduler_topic()]

    def scheduler_topic(self) -> TopicSpec:
        """The scheduler fleet's coordination topic: never written, only its partitions are assigned
        (``scheduler.fleet``). Its partition count is the sources' hash space, so it must match."""
        return TopicSpec(
            f"{self.topic_runs}.schedulers",
            self.scheduler_partitions,
            {"cleanup.policy": "delete", "retention.ms": "3600000", "retention.bytes": "-1"},
            partitions_setting="SCHEDULER_PARTITIONS",
        )
