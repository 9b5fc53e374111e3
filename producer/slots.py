"""When runs are due: fixed intervals or cron expressions (croniter), in a time zone.

A *slot* is the scheduled instant of a run, as a UTC ISO-8601 string (the runs topic's key
is ``<source> @ <slot>``). An interval schedule's slots are the multiples of the interval
since the Unix epoch (``--every 24h`` fires at 00:00 UTC); a cron schedule's slots are the
cron times in its time zone, so ``15 7 * * *`` in Europe/London is 07:15Z in winter and
06:15Z in summer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from core.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """``24h``, ``15m``, ``30s``, ``1.5d``, ``500ms`` or plain seconds, to seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"bad duration {text!r}: expected a number with s, m, h or d, e.g. 24h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def slot_key(slot: datetime) -> str:
    return slot.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_slot(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Schedule:
    """``every`` seconds, or a ``cron`` expression in ``tz``."""

    every_s: float | None = None
    cron: str | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if (self.every_s is None) == (self.cron is None):
            raise ConfigError("give exactly one of --every and --cron")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {self.tz!r}; use an IANA name such as Europe/London") from None
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ConfigError(f"bad cron expression {self.cron!r}")

    @classmethod
    def parse(cls, every: str | None, cron: str | None, tz: str = "UTC") -> Schedule:
        return cls(every_s=parse_duration(every) if every else None, cron=cron, tz=tz)

    def describe(self) -> str:
        return f"every {self.every_s:g}s" if self.every_s is not None else f"cron {self.cron!r} in {self.tz}"

    def latest(self, now: datetime) -> datetime:
        """The most recent slot at or before ``now``."""
        if self.every_s is not None:
            epoch = now.timestamp()
            return datetime.fromtimestamp(epoch - epoch % self.every_s, UTC)
        wall = self._wall(now) + timedelta(microseconds=1)  # get_prev excludes its start
        while True:
            candidate = self._utc(croniter(self.cron, wall).get_prev(datetime))
            if candidate <= now:
                return candidate
            wall = self._wall(candidate)

    def next_after(self, slot: datetime) -> datetime:
        """The first slot strictly after ``slot``."""
        if self.every_s is not None:
            return self.latest(slot) + timedelta(seconds=self.every_s)
        wall = self._wall(slot)
        while True:
            wall = croniter(self.cron, wall).get_next(datetime)
            candidate = self._utc(wall)
            if candidate > slot:
                return candidate

    # Cron fields are wall-clock times: iterate them naive (pure calendar arithmetic), then
    # place each on the UTC time line. A wall time that occurs twice (clocks going back)
    # is its first occurrence; one that does not occur (clocks going forward) is shifted
    # forward by the gap. Each cron time is then exactly one slot.

    def _wall(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.tz)).replace(tzinfo=None, fold=0)

    def _utc(self, wall: datetime) -> datetime:
        return wall.replace(tzinfo=ZoneInfo(self.tz), fold=0).astimezone(UTC)
