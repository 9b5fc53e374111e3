"""Slots: intervals, cron in time zones across DST; and the scheduler's decisions."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, SourceError
from producer.run import RunContext, RunPlan, RunSummary
from producer.runs import RunInfo
from producer.slots import Schedule, parse_duration, slot_key
from scheduler.fleet import Fleet, SourcesWatcher, default_group
from scheduler.membership import Membership, source_partition
from scheduler.metrics import RunMetrics
from scheduler.settings import SchedulerSettings
from scheduler.source_scheduler import Scheduler
from scheduler.sources_file import Sources, load_sources, parse_sources
from scheduler.spec import SchedulePolicy, SourceSpec


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
    """The part of RunLog the scheduler and the fleet read."""

    records: dict[tuple[str, str], RunInfo] = field(default_factory=dict)

    def refresh(self) -> FakeRuns:
        return self

    def latest(self, source: str, slot: datetime) -> RunInfo | None:
        return self.records.get((source, slot_key(slot)))

    def health(self, source: str) -> tuple[RunInfo | None, RunInfo | None, int]:
        return None, None, 0

    def record(self, source: str, slot: datetime, status: str, at: datetime | None = None) -> None:
        ms = int((at or slot).timestamp() * 1000)
        self.records[(source, slot_key(slot))] = RunInfo(source, slot_key(slot), "r", status, ms, "me", ms)


class Clock:
    def __init__(self, now: str) -> None:
        self.now = at(now)

    def __call__(self) -> datetime:
        return self.now


def spec(name: str = "s", every: str = "1h", catch_up: str = "latest") -> SourceSpec:
    policy = SchedulePolicy(Schedule.parse(every, None), catch_up, misfire_grace_s=60, retry_failed_after_s=600)
    return SourceSpec(name, f"http://x/{name}", policy)


def scheduler(
    clock: Clock, runs: FakeRuns, catch_up: str = "latest", fail: bool = False
) -> tuple[Scheduler, list[RunPlan]]:
    plans: list[RunPlan] = []

    def runner(_ctx: RunContext, plan: RunPlan) -> RunSummary:
        plans.append(plan)
        if fail:
            raise SourceError("HTTP 503")
        runs.record("s", plan.slot, "SUCCEEDED")
        return RunSummary(run_id="r", source="s", slot=slot_key(plan.slot), status="succeeded")

    ctx: Any = type("Ctx", (), {"runs": runs})()
    sched = Scheduler(
        ctx, spec(catch_up=catch_up), RunMetrics(), clock=clock, runner=runner, fence=lambda _ctx, _source, _all: []
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
    runs = FakeRuns()
    runs.record("s", at("2026-11-22T05:00:00Z"), "UNCHANGED")
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
    runs.record("s", at("2026-11-22T05:00:00Z"), "FAILED", at=clock.now)
    clock.now += timedelta(minutes=5)
    sched.step()
    assert len(plans) == 1  # within the retry delay
    clock.now += timedelta(minutes=6)
    sched.step()
    assert len(plans) == 2
    clock.now = at("2026-11-22T06:00:05Z")
    sched.step()
    assert slot_key(plans[-1].slot) == "2026-11-22T06:00:00Z"


# -- many sources: the fleet of one replica --------------------------------------------------


class Owned:
    """This replica's partitions, as the consumer group would assign them."""

    def __init__(self, *partitions: int) -> None:
        self.error: str | None = None
        self.generation = 1
        self.partitions = {p: 1 for p in partitions}

    def owned(self) -> dict[int, int]:
        return dict(self.partitions)

    def assign(self, *partitions: int) -> None:
        self.generation += 1
        self.partitions.update({p: self.generation for p in partitions})

    def revoke(self, *partitions: int) -> None:
        for p in partitions:
            self.partitions.pop(p, None)


@dataclass
class FleetRig:
    fleet: Fleet
    clock: Clock
    runs: FakeRuns
    owned: Owned
    ran: list[tuple[str, str]] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    def until_idle(self, limit: int = 50) -> list[tuple[str, str]]:
        """Ticks until nothing runs; what ran, in order."""
        start = len(self.ran)
        for _ in range(limit):
            if self.fleet.tick() is None:
                return self.ran[start:]
        raise AssertionError("the fleet never went idle")


NAMES = ["nse", "bse", "xetra", "nsdl", "lse", "six"]  # partitions 1, 4, 0, 3, 5 and 2 of 6


def fleet_rig(names: list[str], owned: Owned, every: str = "1h", now: str = "2026-11-22T05:30:00Z") -> FleetRig:
    clock, runs = Clock(now), FakeRuns()
    sources = Sources("test.toml", tuple(spec(n, every) for n in names), "d")
    rig: FleetRig

    def runner(ctx: RunContext, plan: RunPlan) -> RunSummary:
        assert ctx.should_stop() is None
        rig.ran.append((plan.source, slot_key(plan.slot)))
        if plan.source in rig.failing:  # as execute() does: a FAILED record, then the error
            runs.record(plan.source, plan.slot, "FAILED", at=clock.now)
            raise SourceError(f"{plan.source}: HTTP 503")
        runs.record(plan.source, plan.slot, "SUCCEEDED")
        return RunSummary(run_id="r", source=plan.source, slot=slot_key(plan.slot), status="succeeded")

    def fence(_ctx: RunContext, source: str, _all: bool) -> list[RunInfo]:
        rig.fenced.append(source)
        return []

    ctx: Any = RunContext(None, None, None, runs, None)  # type: ignore[arg-type]
    fleet = Fleet(
        ctx, sources, owned, RunMetrics(), threading.Event(), partitions=6, clock=clock, runner=runner, fence=fence
    )
    rig = FleetRig(fleet, clock, runs, owned)
    return rig


def test_a_replica_runs_the_sources_of_its_partitions_one_at_a_time() -> None:
    mine = {source_partition(n, 6) for n in NAMES[:3]}
    rig = fleet_rig(NAMES, Owned(*mine))
    first = rig.fleet.tick()
    assert first is not None and len(rig.ran) == 1  # one run per tick: the assignment is looked at in between
    rig.until_idle()
    ran = {source for source, _slot in rig.ran}
    assert ran == {n for n in NAMES if source_partition(n, 6) in mine}
    assert len(rig.ran) == len(ran)  # each once
    assert sorted(rig.fenced) == sorted(ran)  # each fenced when it became ours, before its first run
    rig.clock.now = at("2026-11-22T06:00:01Z")
    assert {s for s, _ in rig.until_idle()} == ran  # the next slot, once each
    assert rig.until_idle() == []


def test_the_oldest_due_slot_runs_first() -> None:
    rig = fleet_rig([], Owned(*range(6)))
    daily = SourceSpec("z-daily", "http://x/z", SchedulePolicy(Schedule.parse("1d", None)))
    rig.fleet.sources = Sources("t", (spec("a-hourly"), daily), "d")
    assert [s for s, _ in rig.until_idle()] == ["z-daily", "a-hourly"]  # 00:00 before 05:00


def test_sources_move_with_their_partitions_and_are_fenced_when_gained() -> None:
    p = {n: source_partition(n, 6) for n in NAMES}
    owned = Owned(p["nse"])
    rig = fleet_rig(NAMES, owned)
    assert rig.until_idle() == [("nse", "2026-11-22T05:00:00Z")]
    # another replica died: its partitions come to this one, whose first act is to fence them
    owned.assign(p["bse"], p["xetra"])
    gained = {n for n in NAMES if p[n] in (p["bse"], p["xetra"])}
    assert {s for s, _ in rig.until_idle()} == gained - {"nse"}
    assert set(rig.fenced) == gained | {"nse"}
    # nse's partition moves away: nse no longer runs here, and a run of it in flight would stop
    ctx = rig.fleet.schedulers["nse"][0].ctx
    owned.revoke(p["nse"])
    assert "moved to another replica" in str(ctx.should_stop())
    rig.clock.now = at("2026-11-22T06:00:01Z")
    assert "nse" not in {s for s, _ in rig.until_idle()}
    assert "nse" not in rig.fleet.schedulers
    # and back again (a new generation): fenced again, since another replica ran it meanwhile
    fenced = len(rig.fenced)
    owned.assign(p["nse"])
    rig.until_idle()
    assert rig.fenced[fenced:] == ["nse"]


def test_a_failing_source_fails_alone() -> None:
    rig = fleet_rig(NAMES, Owned(*range(6)))
    rig.failing.add("bse")
    first = rig.until_idle()
    assert {s for s, _ in first} == set(NAMES)  # bse failed, the others ran
    bse = next(s for s, _ in rig.fleet.schedulers.values() if s.source == "bse")
    assert bse.summaries[-1].status == "failed" and "HTTP 503" in str(bse.summaries[-1].reason)

    def broken() -> None:
        raise RuntimeError("a bug in one source")

    nse = rig.fleet.schedulers["nse"][0]
    nse.step = broken  # type: ignore[method-assign]
    rig.clock.now = at("2026-11-22T06:00:01Z")
    assert {s for s, _ in rig.until_idle()} == set(NAMES) - {"nse"}  # bse's new slot runs; nse's bug is its own


def test_removed_and_disabled_sources_stop_and_added_ones_start() -> None:
    rig = fleet_rig(NAMES[:2], Owned(*range(6)))
    rig.until_idle()
    rig.fleet.sources = Sources("t", (spec("nse"), replace(spec("bse"), enabled=False), spec("lse")), "d2")
    rig.clock.now = at("2026-11-22T06:00:01Z")
    assert sorted(s for s, _ in rig.until_idle()) == ["lse", "nse"]
    assert set(rig.fleet.schedulers) == {"nse", "lse"}


def test_a_changed_sources_file_is_applied_and_an_invalid_one_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def table(name: str) -> str:
        return f'[sources.{name}]\nurl = "https://x/{name}"\nevery = "1h"\n'

    path = tmp_path / "sources.toml"
    path.write_text(table("nse") + table("bse"))
    rig = fleet_rig([], Owned(*range(6)))
    rig.fleet.sources = load_sources(path, {})
    rig.fleet.watcher = SourcesWatcher(path, rig.fleet.sources, lambda d, w: parse_sources(d, w, {}), poll_s=60)
    assert sorted(s for s, _ in rig.until_idle()) == ["bse", "nse"]
    caplog.set_level(logging.INFO, logger="scheduler.fleet")
    path.write_text(table("nse") + "force_publish = true\n" + table("lse"))
    rig.fleet.reload.set()  # SIGHUP; else the next poll
    assert [s for s, _ in rig.until_idle()] == ["lse"]  # nse's 05:00 slot is done
    assert {"sources file: added lse", "sources file: removed bse", "sources file: changed nse"} <= {
        r.getMessage().split(" (")[0] for r in caplog.records
    }
    assert set(rig.fleet.schedulers) == {"nse", "lse"}
    path.write_text(table("nse") + 'tz = "Mars/Olympus"\n')
    rig.fleet.reload.set()
    rig.clock.now = at("2026-11-22T06:00:01Z")
    assert sorted(s for s, _ in rig.until_idle()) == ["lse", "nse"]  # the last good file (lse is not in the bad one)
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert refused and "the last good one stays in force" in refused[-1]
    assert "sources.nse.tz: unknown time zone 'Mars/Olympus'" in refused[-1]
    assert rig.fleet.metrics.sources_file_valid._value.get() == 0


def test_the_fleet_group_is_cooperative_and_notices_a_dead_replica_quickly() -> None:
    settings = SchedulerSettings(topic_runs="isin.runs")
    topic = settings.scheduler_topic()
    assert (topic.name, topic.partitions) == ("isin.runs.schedulers", 12)
    conf = Membership({}, default_group(topic.name), topic.name, settings.scheduler_session_timeout_s)._conf
    assert conf["group.id"] == "isin.runs.schedulers"
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"  # a rebalance moves only what it must
    assert (conf["session.timeout.ms"], conf["heartbeat.interval.ms"]) == (6000, 1000)
    assert default_group(topic.name, "https://x/a b") == "isin.runs.schedulers.https-x-a-b"  # a --source scheduler
