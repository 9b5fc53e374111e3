"""``isin-pipeline schedule``: run a source's list on a schedule, once per slot, on one replica.

What it guarantees, and how:

- **Never twice.** A slot is done once the runs topic has its SUCCEEDED, UNCHANGED or
  SUSPICIOUS record; the scheduler reads the topic before every decision, so a restart
  does not repeat a slot. Only the leader (see ``leader.py``) runs slots, and each run is
  a transaction whose id is scoped to its slot: a second producer of the slot fences the
  first, and a run that completed meanwhile makes a later one abort before it commits.
- **Never a missed day.** After downtime, the latest due slot runs once (``--catch-up
  latest``), not every slot that was missed. A leader that dies mid-run is replaced after
  the group's session timeout, and the new leader runs the slot again (the dead run's
  transaction never committed). A failed run is retried after ``--retry-failed-after``
  while its slot is the latest; an interrupted one (SIGTERM) at once.
- **Clean stops.** SIGTERM or SIGINT interrupts a run in flight: its transaction is aborted
  and it is recorded as INTERRUPTED, never left half-published without a record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from core.errors import PipelineError
from producer.leader import LeaderElection
from producer.metrics import RunMetrics
from producer.publish import RunInterrupted
from producer.reading import ReadHints
from producer.run import RunContext, RunPlan, RunSummary, execute, fence_abandoned
from producer.safety import SafetyPolicy
from producer.schedule import Schedule, slot_key

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SchedulePolicy:
    schedule: Schedule
    catch_up: str = "latest"
    """``latest``: after downtime, run the latest due slot once. ``none``: wait for the next."""
    misfire_grace_s: float = 60.0
    """With ``--catch-up none``, a slot this late still counts as on time."""
    retry_failed_after_s: float = 600.0
    """Retry a FAILED run of the latest slot after this long; 0 never retries."""


class Scheduler:
    def __init__(
        self,
        ctx: RunContext,
        url: str,
        source: str,
        policy: SchedulePolicy,
        election: LeaderElection | None,
        metrics: RunMetrics,
        stop: threading.Event,
        allow_shrink: bool = False,
        force_publish: bool = False,
        clock: Clock = utc_now,
        hints: ReadHints | None = None,
        safety: SafetyPolicy | None = None,
        runner: Callable[[RunContext, RunPlan], RunSummary] = execute,
        fence: Callable[[RunContext, str, bool], object] = fence_abandoned,
    ) -> None:
        self.ctx = ctx
        self.url = url
        self.source = source
        self.policy = policy
        self.election = election
        self.metrics = metrics
        self.stop = stop
        self.allow_shrink = allow_shrink
        self.force_publish = force_publish
        self.clock = clock
        self.hints = hints or ReadHints()
        self.safety = safety or SafetyPolicy()
        self.runner = runner
        self.fence = fence
        self._epoch = -1
        self._skipped: datetime | None = None
        self._done: datetime | None = None
        self.summaries: list[RunSummary] = []

    def leading(self) -> bool:
        return self.election is None or self.election.is_leader

    def step(self) -> RunSummary | None:
        """Decide about the latest due slot, and run it if it is ours to run."""
        if not self.leading():
            return None
        now = self.clock()
        slot = self.policy.schedule.latest(now)
        epoch = self.election.epoch if self.election else 0
        if epoch != self._epoch:  # (re)starting as leader: the runs of earlier leaders are over
            self._epoch = epoch
            self.fence(self.ctx, self.source, False)
            late = (now - slot).total_seconds()
            if self.policy.catch_up == "none" and late > self.policy.misfire_grace_s:
                logger.info(
                    "catch-up none: not running slot %s, %.0fs late; next slot is at %s",
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
        plan = RunPlan(
            self.url,
            self.source,
            slot,
            force_publish=self.force_publish,
            take_over=True,
            hints=self.hints,
            policy=replace(self.safety, allow_shrink=self.allow_shrink),
        )
        try:
            summary = self.runner(self.ctx, plan)
        except PipelineError as exc:
            status = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
            summary = RunSummary(run_id="", source=self.source, slot=slot_key(slot), status=status, reason=str(exc))
            logger.error("run of slot %s failed: %s", slot_key(slot), exc)
            self.metrics.observe(summary, exc)
            self.summaries.append(summary)
            return summary
        self.metrics.observe(summary)
        self.summaries.append(summary)
        return summary

    def run(self, tick_s: float = 1.0) -> int:
        """Loop until stopped. Returns the exit code."""
        logger.info(
            "scheduling %s %s (catch-up %s)", self.source, self.policy.schedule.describe(), self.policy.catch_up
        )
        while not self.stop.is_set():
            if self.election is not None and self.election.error:
                logger.error("stopping: %s", self.election.error)
                return 1
            self.step()
            now = self.clock()
            upcoming = self.policy.schedule.next_after(self.policy.schedule.latest(now))
            self.stop.wait(max(0.05, min(tick_s, (upcoming - now).total_seconds())))
        return 0
