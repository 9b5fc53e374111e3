"""A claim's liveness: heartbeats folded into their claim, silence on the observer's clock."""

from __future__ import annotations

import time
from dataclasses import replace

from core.kafka import KafkaSettings
from producer.runs import RunInfo, RunLog
from schemas import make_serde

HOUR_MS = 3_600_000


def claim(run_id: str = "r1", status: str = "RUNNING", beat: int | None = 1_000, offset: int = 0) -> RunInfo:
    return RunInfo(
        "src",
        "2026-12-01T07:00:00Z",
        run_id,
        status,
        started_at=1_000,
        owner="h:1",
        deadline_at=1_000 + HOUR_MS,
        heartbeat_at=beat,
        offset=offset,
        beat_seen=time.monotonic(),
    )


def log_of(*records: RunInfo) -> RunLog:
    log = RunLog(KafkaSettings(kafka_bootstrap_servers="127.0.0.1:1"), make_serde(None))
    for r in records:
        log._add(r)
    return log


def test_a_claim_just_seen_is_alive_until_silent_for_the_timeout_on_the_observers_clock() -> None:
    run = claim()
    assert not run.abandoned(now_ms=2_000, default_timeout_ms=HOUR_MS, heartbeat_timeout_ms=10_000)
    run.beat_seen = time.monotonic() - 11
    assert run.abandoned(now_ms=2_000, default_timeout_ms=HOUR_MS, heartbeat_timeout_ms=10_000)


def test_a_heartbeat_long_past_by_the_wall_clock_is_dead_at_once() -> None:
    run = claim(beat=1_000)
    assert run.abandoned(now_ms=1_000 + 30_000, default_timeout_ms=HOUR_MS, heartbeat_timeout_ms=10_000)
    assert not run.abandoned(now_ms=1_000 + 29_000, default_timeout_ms=HOUR_MS, heartbeat_timeout_ms=10_000)


def test_a_claim_without_heartbeats_is_bounded_by_its_deadline_only() -> None:
    old = claim(beat=None)
    old.beat_seen = time.monotonic() - 1_000
    assert not old.abandoned(now_ms=HOUR_MS, default_timeout_ms=HOUR_MS, heartbeat_timeout_ms=10_000)
    assert old.abandoned(now_ms=1_000 + HOUR_MS, default_timeout_ms=HOUR_MS, heartbeat_timeout_ms=10_000)


def test_heartbeats_fold_into_their_claim_and_never_reopen_a_finished_run() -> None:
    first = claim(offset=0)
    log = log_of(first, replace(claim(beat=5_000), offset=1), replace(claim(beat=4_000), offset=2))
    assert log.records == [first] and first.heartbeat_at == 5_000 and first.offset == 0
    done = replace(claim(status="SUCCEEDED"), offset=3)
    log._add(done)
    log._add(replace(claim(beat=9_000), offset=4))  # a renewal that lost the race with the final record
    assert [r.status for r in log.records] == ["RUNNING", "SUCCEEDED"]
    assert log.last_of("r1") is done and first.heartbeat_at == 5_000


def test_a_slot_is_done_whatever_was_recorded_after_its_completion() -> None:
    ok = replace(claim(status="SUCCEEDED"), offset=1)
    stood_down = replace(claim(run_id="r2", status="INTERRUPTED"), offset=2)
    log = log_of(claim(offset=0), ok, stood_down)
    slot = ok.slot_at
    assert log.done_run("src", slot) is ok
    assert [r.run_id for r in log.slot_runs("src", slot)] == ["r1", "r2"]
