"""A scheduled source and its slots: each runs once, never twice, never a missed day.

``SourceFields`` are the keys a source may set (checked one by one, for the sources file and
the command line alike), ``SourceSpec`` is a source ready to run, and a ``Scheduler`` decides
about its slots. The scheduler fleet (``fleet.py``) gives every source it runs one
``Scheduler``, created when the source becomes this replica's (its partition of the scheduler
topic was assigned) and dropped when it leaves. What a ``Scheduler`` guarantees, and how:

- **Never twice.** A slot is done once the runs topic has its SUCCEEDED, UNCHANGED or
  SUSPICIOUS record; the scheduler reads the topic before every decision, so a restart or a
  move to another replica does not repeat a slot. Each run is a transaction whose id is
  scoped to its source and slot: a second producer of the slot fences the first, and a run
  that completed meanwhile makes a later one abort before it commits.
- **Never a missed day.** After downtime, the latest due slot runs once (``catch_up =
  "latest"``), not every slot that was missed. A replica that dies mid-run loses its sources
  after the group's session timeout; the replica that gains one first fences the dead run
  (its transaction never committed) and runs the slot again. A failed run is retried after
  ``retry_failed_after`` while its slot is the latest; an interrupted one at once.
- **Clean stops.** SIGTERM or SIGINT interrupts a run in flight: its transaction is aborted
  and it is recorded as INTERRUPTED, never left half-published without a record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.errors import PipelineError
from producer.publish import RunInterrupted
from producer.run import RunContext, RunPlan, RunSummary, execute, fence_abandoned
from producer.slots import slot_key
from scheduler.metrics import RunMetrics
from scheduler.spec import SchedulePolicy, SourceSpec

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Runner = Callable[[RunContext, RunPlan], RunSummary]
Fence = Callable[[RunContext, str, bool], object]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """The slot decisions of one source on the replica that runs it.

    Its first ``step()`` fences the source's unfinished runs: whoever ran the source before
    (a dead or partitioned replica, an earlier incarnation of this one) is over.
    """

    def __init__(
        self,
        ctx: RunContext,
        spec: SourceSpec,
        metrics: RunMetrics,
        clock: Clock = utc_now,
        runner: Runner = execute,
        fence: Fence = fence_abandoned,
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.metrics = metrics
        self.clock = clock
        self.runner = runner
        self.fence = fence
        self._fenced = False
        self._skipped: datetime | None = None
        self._done: datetime | None = None
        self.summaries: list[RunSummary] = []

    @property
    def source(self) -> str:
        return self.spec.name

    @property
    def policy(self) -> SchedulePolicy:
        return self.spec.policy

    def step(self) -> RunSummary | None:
        """Decide about the latest due slot, and run it if it is due."""
        now = self.clock()
        slot = self.policy.schedule.latest(now)
        if not self._fenced:  # the source just became ours: the runs of its earlier owners are over
            self.fence(self.ctx, self.source, False)
            self._fenced = True
            late = (now - slot).total_seconds()
            if self.policy.catch_up == "none" and late > self.policy.misfire_grace_s:
                logger.info(
                    "%s: catch-up none: not running slot %s, %.0fs late; next slot is at %s",
                    self.source,
                    slot_key(slot),
                    late,
                    slot_key(self.policy.schedule.next_after(slot)),
                )
                self._skipped = slot
        if slot in (self._skipped, self._done):
            return None
        latest = self.ctx.runs.refresh().latest(self.source, slot)
        if latest is not None:
            if latest.done:
                self._done = slot
                return None
            if latest.status == "FAILED":
                retry_after = self.policy.retry_failed_after_s
                finished = datetime.fromtimestamp((latest.finished_at or latest.started_at) / 1000, UTC)
                if retry_after <= 0 or now < finished + timedelta(seconds=retry_after):
                    return None
        try:
            summary = self.runner(self.ctx, self.spec.plan(slot))
        except PipelineError as exc:
            status = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
            summary = RunSummary(run_id="", source=self.source, slot=slot_key(slot), status=status, reason=str(exc))
            if isinstance(exc.summary, RunSummary):
                summary = exc.summary
            logger.error("%s: run of slot %s failed: %s", self.source, slot_key(slot), exc)
            self.metrics.observe(summary, exc)
            self.summaries.append(summary)
            return summary
        if summary.status in ("succeeded", "unchanged", "suspicious"):
            self._done = slot
        self.metrics.observe(summary)
        self.summaries.append(summary)
        return summary
