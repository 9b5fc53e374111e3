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

import codecs
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import ConfigError, PipelineError
from producer.download import Credentials, redact_url
from producer.metrics import RunMetrics
from producer.publish import RunInterrupted
from producer.reading import ReadHints
from producer.reading.model import Format
from producer.run import RunContext, RunPlan, RunSummary, execute, fence_abandoned
from producer.safety import SafetyPolicy
from producer.schedule import Schedule, parse_duration, slot_key

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Runner = Callable[[RunContext, RunPlan], RunSummary]
Fence = Callable[[RunContext, str, bool], object]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SchedulePolicy:
    schedule: Schedule
    catch_up: str = "latest"
    """``latest``: after downtime, run the latest due slot once. ``none``: wait for the next."""
    misfire_grace_s: float = 60.0
    """With ``catch_up = "none"``, a slot this late still counts as on time."""
    retry_failed_after_s: float = 600.0
    """Retry a FAILED run of the latest slot after this long; 0 never retries."""


def _duration(value: Any, zero_ok: bool = False) -> Any:
    if isinstance(value, bool):
        return value  # refused by the strict type
    if isinstance(value, int | float):
        if value < 0 or (value == 0 and not zero_ok):
            raise ValueError(f"{value}: a duration must be more than 0")
        return float(value)
    if isinstance(value, str):
        if zero_ok and value.strip() in ("0", "0s"):
            return 0.0
        try:
            return parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return value


class SourceFields(BaseModel):
    """The keys a source may set, each checked on its own: a ``[sources.NAME]`` table of the
    sources file (``sources_file.py``), its ``[defaults]``, or the command line's flags."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    url: str | None = None
    every: float | None = None
    cron: str | None = None
    tz: str | None = None
    catch_up: Literal["latest", "none"] | None = None
    retry_failed_after: float | None = None
    deadline: float | None = None
    max_bytes: int | None = Field(default=None, gt=0)
    headers: dict[str, str] | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    format: Format | None = None
    column: str | None = None
    isin_at: tuple[int, int] | None = None
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    header_row: int | None = Field(default=None, ge=0)
    max_delete_fraction: float | None = Field(default=None, ge=0, le=1)
    max_unreadable_fraction: float | None = Field(default=None, ge=0, le=1)
    max_invalid_jump: float | None = Field(default=None, ge=0, le=1)
    allow_shrink: bool | None = None
    force_publish: bool | None = None
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https", "file"):
            raise ValueError(f"{redact_url(value)!r}: expected an http://, https:// or file:// URL")
        if parts.scheme != "file" and not parts.hostname:
            raise ValueError(f"{redact_url(value)!r}: no host")
        return value

    @field_validator("every", "deadline", mode="before")
    @classmethod
    def _positive_duration(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("retry_failed_after", mode="before")
    @classmethod
    def _retry(cls, value: Any) -> Any:
        return _duration(value, zero_ok=True)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"bad cron expression {value!r}: five fields, e.g. '30 18 * * 1-5'")
        return value

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/London") from None
        return value

    @field_validator("column", "sheet", mode="before")
    @classmethod
    def _name_or_index(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"{value}: an index is 1-based")
            return str(value)
        return value

    @field_validator("isin_at", mode="before")
    @classmethod
    def _isin_at(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            first, last = (int(x) for x in value.split(":"))
        except ValueError:
            raise ValueError(
                f"{value!r}: expected START:END, 1-based inclusive byte positions, e.g. '231:242'"
            ) from None
        if first < 1 or last - first + 1 != 12:
            raise ValueError(f"{value!r}: an ISIN is 12 bytes: START:END with END = START + 11, START at least 1")
        return (first, last)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        value = value.replace("\\t", "\t")
        if len(value) != 1:
            raise ValueError(f"{value!r}: one character")
        return value


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class SourceSpec:
    """One source to schedule: everything a single run of it needs, and when it runs."""

    name: str
    url: str = field(repr=False)
    """May hold a token from the environment: never logged (``redact_url`` for logs)."""
    policy: SchedulePolicy
    hints: ReadHints = field(default_factory=ReadHints)
    safety: SafetyPolicy = field(default_factory=SafetyPolicy)
    force_publish: bool = False
    deadline_s: float | None = None
    max_bytes: int | None = None
    credentials: Credentials | None = field(default=None, repr=False, compare=False)
    """Headers and auth for the source's own origin; None: the settings' (``--source`` form)."""
    enabled: bool = True
    digest: str = ""
    """A hash of the source's whole configuration, secrets included: what a reload compares."""

    @property
    def schedule(self) -> Schedule:
        return self.policy.schedule

    def upcoming(self, now: datetime, count: int = 3) -> list[datetime]:
        """The source's next ``count`` slots after ``now``."""
        slots = [self.schedule.next_after(self.schedule.latest(now))]
        while len(slots) < count:
            slots.append(self.schedule.next_after(slots[-1]))
        return slots

    def describe(self, now: datetime, partition: int) -> str:
        """One line for ``sources check``: the schedule and the next slots, in the source's time zone."""
        tz = ZoneInfo(self.schedule.tz)
        every = self.schedule.every_s
        when = self.schedule.describe() if every is None else f"every {_duration_text(every)}"
        slots = ", ".join(t.astimezone(tz).strftime("%a %Y-%m-%d %H:%M:%S %Z") for t in self.upcoming(now))
        state = "" if self.enabled else " (disabled)"
        return f"{self.name}{state}: {redact_url(self.url)}, {when}; next {slots}; partition {partition}"

    def plan(self, slot: datetime, take_over: bool = True) -> RunPlan:
        return RunPlan(
            self.url,
            self.name,
            slot,
            force_publish=self.force_publish,
            take_over=take_over,
            hints=self.hints,
            policy=self.safety,
            deadline_s=self.deadline_s,
        )


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
