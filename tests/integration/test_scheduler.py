"""The scheduled producer against a real broker and a real loopback HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, Produced, wait_for

NSE = "/data/nse_EQUITY_L.csv"


def final_runs(pipeline: Pipeline) -> list[dict[str, object]]:
    return [r for r in pipeline.runs() if r["status"] != "RUNNING"]


def marker_runs(pipeline: Pipeline) -> Counter[str]:
    """End-of-run markers per run id: a published (completed) run has one per partition."""
    items = pipeline.items(pipeline.env["TOPIC_RAW"])
    return Counter(i.headers["run-id"] for i in items if i.key is None)


def test_a_duplicate_start_does_not_publish_twice(pipeline: Pipeline, list_server: ListServer) -> None:
    """Two starts of the same cron slot at once, as a CronJob may do, then a late third one."""
    url = list_server.url(NSE)
    results: list[Produced] = []

    def start() -> None:
        results.append(pipeline.produce(url, "--cron", "*/30 * * * *"))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    statuses = sorted(r.summary["status"] for r in results if r.summary)
    assert statuses == ["skipped", "succeeded"]
    assert all(r.summary and r.summary["slot"] == results[0].summary["slot"] for r in results)  # type: ignore[index]
    late = pipeline.produce(url, "--cron", "*/30 * * * *")
    assert late.returncode == 0 and late.summary and late.summary["status"] == "skipped"
    assert "is done" in late.summary["reason"]
    assert len([r for r in final_runs(pipeline) if r["status"] == "SUCCEEDED"]) == 1
    assert list(marker_runs(pipeline).values()) == [pipeline.partitions]  # one run's markers, once


def test_a_claim_is_read_through_a_transaction_open_before_it(pipeline: Pipeline) -> None:
    """Why a claimant decides only once it has read its own claim: a run's last transaction,
    open in the runs topic before the claim, holds the claim back from committed reads (the
    embedded broker's ListOffsets then even says 0, so a read "to the end" may stop early)."""
    from confluent_kafka import Producer

    from core.kafka.topics import TopicSpec, ensure_topics
    from producer.runs import RunInfo, RunLog, RunWriter
    from schemas import make_serde

    settings = pipeline.settings()
    ensure_topics(settings, [TopicSpec(settings.topic_runs, 1, {"cleanup.policy": "delete", "retention.ms": "-1"})])
    serde = make_serde(None)
    writer = RunWriter(settings, serde)
    first = RunInfo("nse", "2026-12-01T07:00:00Z", "run-a", "RUNNING", started_at=1, owner="a")
    first.offset = writer.write(first)
    last_txn = Producer({**settings.confluent_config(), "transactional.id": f"t-{pipeline.suffix}"})
    last_txn.init_transactions(10)
    last_txn.begin_transaction()
    done = RunInfo("nse", first.slot, "run-a", "SUCCEEDED", started_at=1, owner="a", finished_at=2)
    last_txn.produce(settings.topic_runs, writer.encode(done), b"nse", partition=0)
    last_txn.flush(10)
    mine = RunInfo("nse", first.slot, "run-b", "RUNNING", started_at=3, owner="b")
    mine.offset = writer.write(mine)
    log = RunLog(settings, serde)
    try:
        assert not log.refresh(timeout=1.5, through=mine.offset).has_read(mine.offset)
        last_txn.commit_transaction(10)
        assert log.refresh(through=mine.offset).has_read(mine.offset)
        assert log.done_run("nse", first.slot_at) is not None, "the run that committed first is seen done"
        assert [r.run_id for r in log.for_slot("nse", first.slot_at)] == ["run-a", "run-a", "run-b"]
    finally:
        log.close()


def test_503_twice_then_200_succeeds(pipeline: Pipeline, list_server: ListServer, shared_data: Path) -> None:
    path = f"/flaky-{pipeline.suffix}.csv"
    url = list_server.script(path, Answer(503), Answer(503), Answer(file=shared_data / "nse_EQUITY_L.csv"))
    pipeline.extra_env["HTTP_RETRIES"] = "3"
    result = pipeline.produce(url)
    assert result.returncode == 0, result.stderr
    assert result.summary and result.summary["status"] == "succeeded" and result.summary["published"] == 2387
    assert len(list_server.hits(path)) == 3


def test_304_means_unchanged_and_nothing_published(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    path = f"/etag-{pipeline.suffix}.csv"
    body = Answer(
        file=shared_data / "nse_EQUITY_L.csv",
        headers={"ETag": '"v1"', "Last-Modified": "Sun, 22 Nov 2026 06:00:00 GMT"},
    )
    url = list_server.script(path, body, Answer(304, headers={"ETag": '"v1"'}))
    assert pipeline.produce(url).returncode == 0
    raw_before = len(pipeline.items(pipeline.env["TOPIC_RAW"]))
    second = pipeline.produce(url)
    assert second.returncode == 0 and second.summary and second.summary["status"] == "unchanged"
    sent = list_server.hits(path)[-1]
    assert sent.get("If-None-Match") == '"v1"' and sent.get("If-Modified-Since") == "Sun, 22 Nov 2026 06:00:00 GMT"
    assert len(pipeline.items(pipeline.env["TOPIC_RAW"])) == raw_before
    assert [r["status"] for r in final_runs(pipeline)] == ["SUCCEEDED", "UNCHANGED"]
    # validators belong to a URL: the same source at another URL gets an unconditional GET
    # (of the same list less its first row: another content, the same ISIN column)
    lines = (shared_data / "nse_EQUITY_L.csv").read_bytes().split(b"\n")
    other = list_server.script(f"/other-{pipeline.suffix}.csv", Answer(body=b"\n".join([lines[0], *lines[2:]])))
    moved = pipeline.produce(other, "--source-name", other.replace("/other-", "/etag-"))
    assert moved.returncode == 0
    sent = list_server.hits(f"/other-{pipeline.suffix}.csv")[0]
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent


def test_a_broken_zip_fails_the_run_clearly(pipeline: Pipeline, list_server: ListServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    result = pipeline.produce(list_server.add_file("broken.zip", broken))
    assert result.returncode == 1 and "broken zip" in result.last_error_line
    (run,) = final_runs(pipeline)
    assert run["status"] == "FAILED" and "broken zip" in str(run["reason"])


def make_gleif(tool: Path, out: Path, rows: int) -> Path:
    subprocess.run([sys.executable, str(tool), "--rows", str(rows), "--out", str(out)], check=True, capture_output=True)
    return out


def test_the_shrink_guard_stops_the_truncated_nsdl_scrape(
    pipeline: Pipeline, list_server: ListServer, gleif_tool: Path, tmp_path: Path
) -> None:
    """Yesterday's list had 40,000 ISINs (synthetic); today's download is the real, truncated
    NSDL scrape with 15,460. Publishing its deletes would wipe most of the table."""
    name = ["--source-name", "isin-master"]
    day1 = list_server.add_file("master.csv", make_gleif(gleif_tool, tmp_path / "master.csv", 40_000))
    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(day1, *name).returncode == 0
    pipeline.wait_processed(40_000, markers=pipeline.partitions)

    scrape = list_server.url("/data/nsdl_india-isin_ISIN_20240831.csv")
    held = pipeline.produce(scrape, *name)
    assert held.returncode == 3, held.stderr
    assert held.summary and held.summary["status"] == "suspicious" and held.summary["markers"] is False
    assert "24540 (61.4%) fewer than the 40000" in held.last_error_line
    stats = pipeline.wait_processed(40_000 + 15_460, markers=pipeline.partitions)
    assert stats["isins"] == 40_000 + 15_460  # published, but nothing deleted

    accepted = pipeline.produce(scrape, *name, "--allow-shrink")
    assert accepted.returncode == 0 and accepted.summary and accepted.summary["status"] == "succeeded"
    stats = pipeline.wait_processed(40_000 + 2 * 15_460, markers=2 * pipeline.partitions)
    assert stats["isins"] == 15_460
    assert [r["status"] for r in final_runs(pipeline)] == ["SUCCEEDED", "SUSPICIOUS", "SUCCEEDED"]


def schedule(pipeline: Pipeline, name: str, url: str, *args: str) -> object:
    return pipeline.spawn(name, "schedule", "--source", url, "--source-name", "sched", *args).start()


def test_catch_up_after_downtime_is_exactly_one_run(pipeline: Pipeline, list_server: ListServer) -> None:
    """The runs topic says the source last ran four slots ago (a scheduler that was down): the
    scheduler that starts runs the latest due slot once, not the ones it missed. (Which slot is
    latest depends on when it starts: the exact decision is tested with a fake clock in
    tests/unit/test_schedule.py.) No real downtime is waited out: the past is written as it
    would have been, by a run of that old slot."""
    url, every = list_server.url(NSE), 60
    now = time.time()
    latest_due = now - now % every
    old = datetime.fromtimestamp(latest_due - 4 * every, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = pipeline.cli("produce", "--source", url, "--source-name", "sched", "--slot", old, "--force-publish")
    assert before.summary is not None and before.summary["status"] == "succeeded", before.stderr[-2000:]
    restarted = time.time()
    second = schedule(pipeline, "s2", url, "--every", f"{every}s", "--force-publish")

    def after_restart() -> list[float]:
        return sorted(_ts(str(r["slot"])) for r in final_runs(pipeline) if _ts(str(r["slot"])) > _ts(old))

    wait_for("a run after the restart", after_restart, 60)
    assert second.stop() == 0  # type: ignore[attr-defined]
    slots = [_ts(str(r["slot"])) for r in final_runs(pipeline)]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    due_at_restart = restarted - restarted % every
    missed = [s for s in after_restart() if s < due_at_restart]
    assert missed == [], f"slots missed during the downtime were run: {missed}"
    assert after_restart()[0] in (due_at_restart, due_at_restart + every), "not the latest due slot"


def _ts(slot: str) -> float:
    from producer.slots import parse_slot

    return parse_slot(slot).timestamp()


@pytest.mark.slow
def test_two_replicas_run_every_slot_once_even_when_the_leader_is_killed(
    pipeline: Pipeline, list_server: ListServer, gleif_tool: Path, tmp_path: Path
) -> None:
    """Every 25 s, two replicas. The leader is killed (SIGKILL) in the middle of a run: the
    other takes over within the slot and runs it; every slot succeeds exactly once. The list
    (5 MB) is served at 1 MB/s so that a run lasts long enough to be killed in the middle."""
    big = make_gleif(gleif_tool, tmp_path / "big.csv", 150_000)
    source = list_server.script(f"/slow-{pipeline.suffix}.csv", Answer(file=big, rate_bps=1_000_000))
    args = ["--every", "25s", "--force-publish"]
    procs = {"a": schedule(pipeline, "a", source, *args), "b": schedule(pipeline, "b", source, *args)}

    def live_claim() -> dict[str, object] | None:
        """A run in progress that started on time (the first one may catch up a slot late)."""
        finals = {r["run_id"] for r in final_runs(pipeline)}
        live = [
            r
            for r in pipeline.runs()
            if r["status"] == "RUNNING"
            and r["run_id"] not in finals
            and r["started_at"].timestamp() - _ts(str(r["slot"])) < 3  # type: ignore[union-attr]
        ]
        return live[-1] if live else None

    claim = wait_for("a run in progress", live_claim, 90, interval=0.1)
    pid = int(str(claim["owner"]).rsplit(":", 1)[1])
    leader = next(name for name, p in procs.items() if p.pid == pid)  # type: ignore[attr-defined]
    procs[leader].kill()  # type: ignore[attr-defined]
    killed_at = time.time()
    survivor = procs["b" if leader == "a" else "a"]

    def rerun() -> dict[str, object] | None:
        return next((r for r in pipeline.runs() if r["slot"] == claim["slot"] and r["run_id"] != claim["run_id"]), None)

    takeover = wait_for("the other replica to claim the slot", rerun, 60)
    took = takeover["started_at"].timestamp() - killed_at  # type: ignore[union-attr]
    print(f"\ntakeover: the other replica claimed slot {claim['slot']} {took:.1f}s after the SIGKILL")
    wait_for(
        "three slots done",
        lambda: len({r["slot"] for r in final_runs(pipeline) if r["status"] == "SUCCEEDED"}) >= 3,
        120,
    )
    assert survivor.stop() == 0  # type: ignore[attr-defined]

    finals = final_runs(pipeline)
    succeeded = [r for r in finals if r["status"] == "SUCCEEDED"]
    per_slot = Counter(str(r["slot"]) for r in succeeded)
    assert set(per_slot.values()) == {1}, f"a slot succeeded twice: {per_slot}"
    assert claim["slot"] in per_slot, "the killed run's slot was not run by the other replica"
    # the killed run: fenced and recorded, never completed
    (killed,) = [r for r in finals if r["run_id"] == claim["run_id"]]
    assert killed["status"] == "INTERRUPTED" and "abandoned" in str(killed["reason"])
    # exactly one complete set of end-of-run markers per succeeded run, none for the killed one
    markers = marker_runs(pipeline)
    assert sorted(markers) == sorted(str(r["run_id"]) for r in succeeded)
    assert set(markers.values()) == {pipeline.partitions}


def test_metrics_runs_history_and_a_clean_sigterm(pipeline: Pipeline, list_server: ListServer) -> None:
    from core.broker import free_port

    port = free_port()
    sched = schedule(pipeline, "m", list_server.url(NSE), "--every", "1h", "--metrics-port", str(port))
    wait_for("a run", lambda: any(r["status"] == "SUCCEEDED" for r in pipeline.runs()), 60)

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def after_the_run() -> str | None:
        text = metrics()
        return text if 'isin_pipeline_runs_total{source="sched",status="succeeded"} 1.0' in text else None

    text = wait_for("metrics after the run", after_the_run, 30)
    for series in (
        'isin_pipeline_run_last_success_timestamp_seconds{source="sched"}',
        'isin_pipeline_run_duration_seconds_count{source="sched"} 1.0',
        'isin_pipeline_run_rows{source="sched"} 2387.0',
        'isin_pipeline_run_invalid_rows{source="sched"} 0.0',
        'isin_pipeline_scheduler_runs_source{source="sched"} 1.0',
    ):
        assert series in text, series
    assert sched.stop(timeout=20) == 0  # type: ignore[attr-defined]  # SIGTERM, else SIGKILL (-9) after 20 s

    history = pipeline.cli("runs", "--format", "json")
    assert history.returncode == 0
    runs = [json.loads(line) for line in history.stdout.splitlines()]
    assert len(runs) == 1
    assert {"run_id", "source", "slot", "status", "started_at", "finished_at", "valid", "published"} <= set(runs[0])
    assert (runs[0]["status"], runs[0]["valid"], runs[0]["published"]) == ("SUCCEEDED", 2387, 2387)
    table = pipeline.cli("runs", "--source", "sched")
    assert table.returncode == 0 and "SUCCEEDED" in table.stdout
