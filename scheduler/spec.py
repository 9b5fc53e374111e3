"""A scheduled source: the keys it may set (``SourceFields``, checked one by one for the sources
file and the command line alike), when it runs (``SchedulePolicy``), and the source ready to
run (``SourceSpec``)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import ConfigDict, Field, field_validator

from core.errors import ConfigError
from producer.download import Credentials
from producer.hints import HintFields
from producer.reading import ReadHints
from producer.run import RunPlan
from producer.safety import SafetyPolicy
from producer.slots import Schedule, parse_duration
from producer.urls import redact_url

logger = logging.getLogger(__name__)


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
        if not math.isfinite(value):
            raise ValueError(f"{value}: a duration is a finite number of seconds")
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


class SourceFields(HintFields):
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
        try:  # a valid expression may still never fire (the 31st of February)
            croniter(value, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"cron expression {value!r} never fires") from None
        return value

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/London") from None
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
