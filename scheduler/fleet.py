"""The scheduler fleet: many sources spread over the replicas through one Kafka consumer group.

Every replica joins one consumer group on the scheduler topic (``<TOPIC_RUNS>.schedulers``,
``SCHEDULER_PARTITIONS`` partitions, never written: only its assignment matters). A source
belongs to the partition its name hashes to (``source_partition``), and a replica runs the
sources of the partitions it is assigned. When a replica joins, leaves or dies, the group
rebalances (``cooperative-sticky``: only the partitions that must move are revoked), and the
sources move with their partitions within the session timeout.

Fencing stays per run: a run is a transaction whose id is scoped to its source and slot, so a
replica that lost a partition without noticing cannot commit a second run of a slot. A replica
that gains a source first fences that source's unfinished runs (``Scheduler.step``); one that
loses a source interrupts its run in flight. Runs on one replica go one at a time, the oldest
due slot first; a source whose run fails fails alone.
"""

from __future__ import annotations

import hashlib
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import PipelineError
from producer.download import Credentials, Downloader
from producer.progress import RunProgress
from producer.run import RunContext, RunSummary, execute, fence_abandoned
from producer.runs import RunLog
from producer.slots import slot_key
from producer.urls import redact_url
from scheduler.membership import Membership, Ownership, source_partition
from scheduler.metrics import RunMetrics
from scheduler.settings import SchedulerSettings
from scheduler.source_scheduler import Clock, Fence, Runner, Scheduler, utc_now
from scheduler.sources_file import Sources, SourcesError, changes, read_sources_file
from scheduler.spec import SourceSpec

logger = logging.getLogger(__name__)

DownloaderFor = Callable[[Credentials | None, int | None], Downloader]


class Fleet:
    """The many-source loop of one replica: the sources of its partitions, one run at a time."""

    def __init__(
        self,
        ctx: RunContext,
        sources: Sources,
        membership: Ownership,
        metrics: RunMetrics,
        stop: threading.Event,
        *,
        partitions: int,
        downloader_for: DownloaderFor | None = None,
        watcher: SourcesWatcher | None = None,
        reload: threading.Event | None = None,
        clock: Clock = utc_now,
        runner: Runner = execute,
        fence: Fence = fence_abandoned,
    ) -> None:
        self.ctx = ctx
        self.sources = sources
        self.membership = membership
        self.metrics = metrics
        self.stop = stop
        self.partitions = partitions
        self.downloader_for = downloader_for
        self.watcher = watcher
        self.reload = reload or threading.Event()
        self.clock = clock
        self.runner = runner
        self.fence = fence
        self.schedulers: dict[str, tuple[Scheduler, int]] = {}
        """The sources this replica runs, with the generation their partition was assigned in."""
        self._errors: dict[str, str] = {}

    def partition(self, source: str) -> int:
        return source_partition(source, self.partitions)

    def tick(self) -> RunSummary | None:
        """Apply reloads and (re)assignments, then decide about each source of ours; run at most one."""
        self._apply_reload()
        self._follow_assignment()
        now = self.clock()
        ordered = sorted(self.schedulers.values(), key=lambda p: (p[0].policy.schedule.latest(now), p[0].source))
        for scheduler, _generation in ordered:
            if self.stop.is_set():
                return None
            summary = self._step(scheduler)
            if summary is not None:
                return summary  # one run at a time: look at the assignment again before the next
        return None

    def run(self, tick_s: float = 1.0) -> int:
        """Loop until stopped. Returns the exit code."""
        logger.info(
            "scheduling %d sources (%d enabled) from %s over %d partitions",
            len(self.sources.sources),
            len(self.sources.enabled()),
            self.sources.where,
            self.partitions,
        )
        while not self.stop.is_set():
            if self.membership.error:
                logger.error("stopping: %s", self.membership.error)
                return 1
            summary = self.tick()
            if summary is not None and summary.status not in ("failed", "interrupted"):
                continue  # the next due slot at once; after a failure, a tick's pause first
            now = self.clock()
            upcoming = [s.spec.upcoming(now, 1)[0] for s, _ in self.schedulers.values()]
            wait = min([tick_s, *((u - now).total_seconds() for u in upcoming)])
            self.stop.wait(max(0.05, wait))
        return 0

    # -- assignment -------------------------------------------------------------------

    def _follow_assignment(self) -> None:
        owned = self.membership.owned()
        mine = {s.name: s for s in self.sources.enabled() if self.partition(s.name) in owned}
        for name, (scheduler, generation) in list(self.schedulers.items()):
            spec = mine.get(name)
            if spec is None or spec != scheduler.spec or owned[self.partition(name)] != generation:
                del self.schedulers[name]
                if spec is None:
                    logger.info("source %s left this replica", name)
                    self.metrics.lose(name)
        for name, spec in mine.items():
            if name not in self.schedulers:
                self._gain(spec, owned[self.partition(name)])
        self.metrics.partitions.set(len(owned))
        self.metrics.sources.set(len(self.schedulers))

    def _gain(self, spec: SourceSpec, generation: int) -> None:
        partition = self.partition(spec.name)
        logger.info(
            "source %s (partition %d) runs on this replica: %s, %s",
            spec.name,
            partition,
            redact_url(spec.url),
            spec.schedule.describe(),
        )
        context = self._context(spec, partition, generation)
        scheduler = Scheduler(context, spec, self.metrics, self.clock, self.runner, self.fence)
        self.schedulers[spec.name] = (scheduler, generation)
        try:
            runs = self.ctx.runs.refresh()
            self.metrics.gain(spec.name, *runs.health(spec.name))
        except Exception as exc:  # metrics only: the source runs regardless
            logger.warning("source %s: no health from the runs topic yet: %s", spec.name, exc)
            self.metrics.runs_source.labels(spec.name).set(1)
        self.metrics.schedule(spec.name, spec.schedule, self.clock())

    def _context(self, spec: SourceSpec, partition: int, generation: int) -> RunContext:
        base_stop = self.ctx.should_stop

        def should_stop() -> str | None:
            reason = base_stop()
            if reason is None and self.membership.owned().get(partition) != generation:
                reason = f"source {spec.name} moved to another replica (partition {partition} was revoked)"
            return reason

        downloader = self.ctx.downloader
        if self.downloader_for is not None and (spec.credentials is not None or spec.max_bytes is not None):
            downloader = self.downloader_for(spec.credentials, spec.max_bytes)
        # A daemon's progress is log lines, named after the source (never a terminal's bars).
        progress = RunProgress(spec.name, interactive=False)
        return replace(self.ctx, downloader=downloader, should_stop=should_stop, progress=progress)

    def _step(self, scheduler: Scheduler) -> RunSummary | None:
        name = scheduler.source
        try:
            summary = scheduler.step()
        except Exception as exc:  # one source's trouble (a broker error while fencing, a bug) is its own
            message = f"{type(exc).__name__}: {exc}"
            if self._errors.get(name) != message:
                logger.error("source %s: %s", name, message, exc_info=not isinstance(exc, PipelineError))
                self._errors[name] = message
            return None
        self._errors.pop(name, None)
        self.metrics.schedule(name, scheduler.spec.schedule, self.clock())
        return summary

    # -- the sources file -------------------------------------------------------------

    def _apply_reload(self) -> None:
        if self.watcher is None:
            return
        forced = self.reload.is_set()
        self.reload.clear()
        result = self.watcher.poll(force=forced)
        self.metrics.sources_file_valid.set(0 if self.watcher.refused else 1)
        if isinstance(result, SourcesError):
            self.metrics.reloads.labels("refused").inc()
            logger.error(
                "the sources file %s is invalid; the last good one stays in force (%d errors):\n  %s",
                result.where,
                len(result.errors),
                "\n  ".join(result.errors),
            )
            return
        if result is None:
            return
        added, removed, changed = changes(self.sources, result)
        self.metrics.reloads.labels("applied").inc()
        for name in added:
            spec = result.get(name)
            assert spec is not None
            logger.info("sources file: added %s (%s, %s)", name, redact_url(spec.url), spec.schedule.describe())
        for name in removed:
            logger.info("sources file: removed %s", name)
        for name in changed:
            logger.info("sources file: changed %s", name)
        logger.info(
            "sources file %s reloaded: %d added, %d removed, %d changed; %d sources",
            result.where,
            len(added),
            len(removed),
            len(changed),
            len(result.sources),
        )
        self.sources = result


def serve(
    ctx: RunContext,
    settings: SchedulerSettings,
    sources: Sources,
    *,
    group: str,
    metrics: RunMetrics,
    stop: threading.Event,
    downloader_for: DownloaderFor | None = None,
    watcher: SourcesWatcher | None = None,
    reload: threading.Event | None = None,
) -> int:
    """Join the fleet's group and run its sources until stopped; the exit code."""
    topic = settings.scheduler_topic().name
    membership = Membership(settings.confluent_config(), group, topic, settings.scheduler_session_timeout_s).start()
    logger.info("joining the scheduler group %s on %s (%d partitions)", group, topic, settings.scheduler_partitions)
    try:
        fleet = Fleet(
            ctx,
            sources,
            membership,
            metrics,
            stop,
            partitions=settings.scheduler_partitions,
            downloader_for=downloader_for,
            watcher=watcher,
            reload=reload,
        )
        return fleet.run()
    finally:
        membership.stop()


@contextmanager
def reload_on_sighup() -> Iterator[threading.Event]:
    """SIGHUP sets the event: the scheduler reads its sources file again."""
    reload = threading.Event()
    old = signal.signal(signal.SIGHUP, lambda _signum, _frame: reload.set())
    try:
        yield reload
    finally:
        signal.signal(signal.SIGHUP, old)


def default_group(topic: str, one_source: str | None = None) -> str:
    """The fleet's consumer group: one per sources file; a ``--source`` scheduler has its own."""
    if one_source is None:
        return topic
    return f"{topic}.{re.sub(r'[^A-Za-z0-9._-]+', '-', one_source).strip('-')[:100]}"


def fleet_of_one(spec: SourceSpec) -> Sources:
    """``schedule --source URL``: a fleet of one source."""
    return Sources("--source", (spec,), spec.digest)


def source_states(log: RunLog, configured: Sources | None, now: datetime) -> list[dict[str, Any]]:
    """``isin-pipeline runs``: each source's last run, the age of its last success, its next slot."""
    names = set(log.sources()) | ({s.name for s in configured.enabled()} if configured else set())
    states = []
    for name in sorted(names):
        last, ok = log.last_run(name), log.last_ok(name)
        spec = configured.get(name) if configured else None
        success = None if ok is None else (ok.finished_at or ok.started_at) / 1000
        states.append(
            {
                **(last.to_json() if last else {"source": name, "slot": None, "status": None}),
                "last_success_at": None if success is None else slot_key(datetime.fromtimestamp(success, UTC)),
                "last_success_age_s": None if success is None else round(now.timestamp() - success, 1),
                "next_slot": slot_key(spec.schedule.next_after(spec.schedule.latest(now))) if spec else None,
            }
        )
    return states


class SourcesWatcher:
    """Notices a changed sources file: its mtime every ``poll_s``, then its hash.

    ``poll()`` returns the new sources when the file changed and is valid, its SourcesError
    (once per content) when it changed and is invalid, and None otherwise; the caller keeps
    the last good sources in force. ``force`` (SIGHUP) reads the file whatever its mtime.
    """

    def __init__(
        self,
        path: str | Path,
        current: Sources,
        load: Callable[[bytes, str], Sources],
        poll_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self._load = load
        self._clock = clock
        self._digest = current.digest
        self._refused: str | None = None
        self._stat = self._signature()
        self._next = clock() + poll_s

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()  # follows symlinks: a ConfigMap update swaps one
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def poll(self, force: bool = False) -> Sources | SourcesError | None:
        now = self._clock()
        if not force and now < self._next:
            return None
        self._next = now + self.poll_s
        signature = self._signature()
        if not force and signature == self._stat:
            return None
        self._stat = signature
        try:
            data = read_sources_file(self.path)
        except SourcesError as exc:
            return self._refuse(hashlib.sha256(str(exc).encode()).hexdigest(), exc)
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            if force:
                logger.info("sources file %s: unchanged", self.path)
            self._refused = None
            return None
        try:
            sources = self._load(data, str(self.path))
        except SourcesError as exc:
            return self._refuse(digest, exc)
        except Exception as exc:  # whatever the file holds, a reload never stops the fleet
            return self._refuse(
                digest, SourcesError(str(self.path), [f"cannot be loaded: {type(exc).__name__}: {exc}"])
            )
        self._digest, self._refused = digest, None
        return sources

    @property
    def refused(self) -> bool:
        """The file on disk is invalid (the last good one is in force)."""
        return self._refused is not None

    def _refuse(self, digest: str, error: SourcesError) -> SourcesError | None:
        if digest == self._refused:
            return None  # reported already
        self._refused = digest
        return error
