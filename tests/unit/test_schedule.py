"""Slots: intervals, cron in time zones across DST; and the scheduler's decisions."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.errors import ConfigError, SourceError
from producer.metrics import RunMetrics
from producer.run import RunContext, RunPlan, RunSummary
from producer.runs import RunInfo
from producer.schedule import Schedule, parse_duration, slot_key
from producer.scheduler import SchedulePolicy, Scheduler


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_durations() -> None:
    assert [parse_duration(x) for x in ("24h", "15m", "30s", "1.5d", "500ms", "7")] == [86400, 900, 30, 129600, 0.5, 7]
    for bad in ("", "h", "-5m", "0", "3 weeks"):
        with pytest.raises(ConfigError, match="bad duration"):
            parse_duration(bad)


def test_interval_slots_are_aligned_to_the_epoch() -> None:
    s = Schedule.parse("24h", None)
    assert slot_key(s.latest(at("2026-11-22T05:00:00Z"))) == "2026-11-22T00:00:00Z"
    assert slot_key(s.next_after(at("2026-11-22T00:00:00Z"))) == "2026-11-23T00:00:00Z"
    assert s.latest(at("2026-11-22T00:00:00Z")) == at("2026-11-22T00:00:00Z")  # a slot is due at its instant


@pytest.mark.parametrize(
    ("now", "latest", "nxt"),
    [
        ("2026-01-10T12:00:00Z", "2026-01-10T07:15:00Z", "2026-01-11T07:15:00Z"),  # GMT
        ("2026-07-10T12:00:00Z", "2026-07-10T06:15:00Z", "2026-07-11T06:15:00Z"),  # BST
        ("2026-03-29T07:00:00Z", "2026-03-29T06:15:00Z", "2026-03-30T06:15:00Z"),  # the day clocks go forward
        ("2026-10-25T06:20:00Z", "2026-10-24T06:15:00Z", "2026-10-25T07:15:00Z"),  # the day clocks go back
    ],
)
def test_cron_follows_the_time_zone(now: str, latest: str, nxt: str) -> None:
    s = Schedule.parse(None, "15 7 * * *", "Europe/London")
    assert slot_key(s.latest(at(now))) == latest
    assert slot_key(s.next_after(s.latest(at(now)))) == nxt


def test_a_time_that_does_not_exist_or_exists_twice_is_one_slot() -> None:
    s = Schedule.parse(None, "30 1 * * *", "Europe/London")
    spring = [s.latest(at("2026-03-28T12:00:00Z"))]
    autumn = [s.latest(at("2026-10-23T12:00:00Z"))]
    for _ in range(3):
        spring.append(s.next_after(spring[-1]))
        autumn.append(s.next_after(autumn[-1]))
    # 01:30 does not exist on 29 March (01:00 -> 02:00): it runs at 02:30 BST, once
    assert [slot_key(x) for x in spring] == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:30:00Z",
        "2026-03-30T00:30:00Z",
        "2026-03-31T00:30:00Z",
    ]
    # 01:30 happens twice on 25 October: it runs at the first one, once
    assert [slot_key(x) for x in autumn] == [
        "2026-10-23T00:30:00Z",
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ]


def test_schedule_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        Schedule.parse(None, None)
    with pytest.raises(ConfigError, match="bad cron"):
        Schedule.parse(None, "61 * * * *")
    with pytest.raises(ConfigError, match="unknown time zone"):
        Schedule.parse(None, "15 7 * * *", "Mars/Olympus")


@dataclass
class FakeRuns:
    """The part of RunLog the scheduler reads."""

    records: dict[str, RunInfo] = field(default_factory=dict)

    def refresh(self) -> FakeRuns:
        return self

    def latest(self, source: str, slot: datetime) -> RunInfo | None:
        return self.records.get(slot_key(slot))


class Clock:
    def __init__(self, now: str) -> None:
        self.now = at(now)

    def __call__(self) -> datetime:
        return self.now


def scheduler(
    clock: Clock, runs: FakeRuns, catch_up: str = "latest", fail: bool = False
) -> tuple[Scheduler, list[RunPlan]]:
    plans: list[RunPlan] = []

    def runner(_ctx: RunContext, plan: RunPlan) -> RunSummary:
        plans.append(plan)
        if fail:
            raise SourceError("HTTP 503")
        runs.records[slot_key(plan.slot)] = RunInfo("s", slot_key(plan.slot), "r", "SUCCEEDED", 0, "me")
        return RunSummary(run_id="r", source="s", slot=slot_key(plan.slot), status="succeeded")

    ctx: Any = type("Ctx", (), {"runs": runs})()
    policy = SchedulePolicy(Schedule.parse("1h", None), catch_up, misfire_grace_s=60, retry_failed_after_s=600)
    sched = Scheduler(
        ctx,
        "http://x",
        "s",
        policy,
        None,
        RunMetrics(),
        threading.Event(),
        clock=clock,
        runner=runner,
        fence=lambda _ctx, _source, _expired: [],
    )
    return sched, plans


def test_after_downtime_the_latest_slot_runs_once() -> None:
    clock, runs = Clock("2026-11-22T05:30:00Z"), FakeRuns()
    sched, plans = scheduler(clock, runs)
    sched.step()
    sched.step()
    clock.now += timedelta(minutes=10)
    sched.step()
    assert [slot_key(p.slot) for p in plans] == ["2026-11-22T05:00:00Z"]  # not 00:00 to 04:00 as well
    clock.now = at("2026-11-22T06:00:01Z")
    sched.step()
    assert [slot_key(p.slot) for p in plans][-1] == "2026-11-22T06:00:00Z" and len(plans) == 2
    assert all(p.take_over for p in plans)


def test_a_slot_done_before_a_restart_does_not_run_again() -> None:
    clock = Clock("2026-11-22T05:30:00Z")
    runs = FakeRuns({"2026-11-22T05:00:00Z": RunInfo("s", "2026-11-22T05:00:00Z", "r0", "UNCHANGED", 0, "other")})
    sched, plans = scheduler(clock, runs)
    sched.step()
    assert plans == []


def test_catch_up_none_waits_for_the_next_slot() -> None:
    clock, runs = Clock("2026-11-22T05:30:00Z"), FakeRuns()
    sched, plans = scheduler(clock, runs, catch_up="none")
    sched.step()
    assert plans == []
    clock.now = at("2026-11-22T06:00:30Z")  # on time (within the grace)
    sched.step()
    assert [slot_key(p.slot) for p in plans] == ["2026-11-22T06:00:00Z"]


def test_a_failed_slot_is_retried_after_the_delay_and_the_next_slot_still_runs() -> None:
    clock, runs = Clock("2026-11-22T05:00:10Z"), FakeRuns()
    sched, plans = scheduler(clock, runs, fail=True)
    summary = sched.step()
    assert summary is not None and summary.status == "failed" and summary.reason == "HTTP 503"
    failed_at = int(clock.now.timestamp() * 1000)
    runs.records["2026-11-22T05:00:00Z"] = RunInfo(
        "s", "2026-11-22T05:00:00Z", "r", "FAILED", failed_at, "me", failed_at
    )
    clock.now += timedelta(minutes=5)
    sched.step()
    assert len(plans) == 1  # within the retry delay
    clock.now += timedelta(minutes=6)
    sched.step()
    assert len(plans) == 2
    clock.now = at("2026-11-22T06:00:05Z")
    sched.step()
    assert slot_key(plans[-1].slot) == "2026-11-22T06:00:00Z"
