"""End to end: produce real lists, a Faust worker dedups them into the table and the compacted topic."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, wait_for


def test_nse_list_end_to_end(pipeline: Pipeline, list_server: ListServer) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy(timeout=30)  # the contract: healthy within 30 s, untuned (it raises otherwise)

    first = pipeline.produce(list_server.url("/data/nse_EQUITY_L.csv"))
    assert first.returncode == 0, first.stderr
    stats = pipeline.wait_processed(2387, markers=pipeline.partitions)
    assert stats["isins"] == 2387

    status, record = worker.get("/isins/INE144J01027")
    assert status == 200
    assert record["isin"] == "INE144J01027" and record["change"] == "NEW"
    assert record["listings"][0]["attributes"]["symbol"] == "20MICRONS"
    assert worker.get("/isins/ine144j01027")[0] == 200  # stdnum's compact form
    assert worker.get("/isins/US0378331005")[0] == 404  # valid, but not in the NSE list
    status, body = worker.get("/isins/INE144J01028")
    assert status == 400 and "check digit" in body["error"]

    current_topic = pipeline.env["TOPIC_CURRENT"]
    assert len(pipeline.current()) == 2387
    emitted_before = len(pipeline.items(current_topic))

    # the producer sees the list is unchanged and publishes nothing ...
    same = pipeline.produce(list_server.url("/data/nse_EQUITY_L.csv"))
    assert same.returncode == 0 and same.summary and same.summary["status"] == "unchanged", same.stdout
    # ... and when it publishes all the events again anyway, the table dedups them
    again = pipeline.produce(list_server.url("/data/nse_EQUITY_L.csv"), "--force-publish")
    assert again.returncode == 0, again.stderr
    stats = pipeline.wait_processed(2 * 2387, markers=2 * pipeline.partitions)
    assert stats["isins"] == 2387
    dedup = stats["workers"][0]["dedup"]
    assert dedup["unchanged"] == 2387 and dedup["new"] == 2387 and dedup["changed"] == 0
    # an identical second run emits nothing to the compacted topic
    assert len(pipeline.items(current_topic)) == emitted_before


def test_bse_list_end_to_end(pipeline: Pipeline, list_server: ListServer) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    result = pipeline.produce(list_server.url("/data/bse_Equity.csv"))
    assert result.returncode == 0, result.stderr
    stats = pipeline.wait_processed(4924, markers=pipeline.partitions)
    assert stats["isins"] == 4924
    assert len(pipeline.current()) == 4924
    assert len(pipeline.items(pipeline.env["TOPIC_DLQ"])) == 2


def make_gleif(tool: Path, out: Path, rows: int, day: int = 1) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, str(tool), "--rows", str(rows), "--day", str(day), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return dict(json.loads(proc.stdout))


def read_gleif(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        return {row["ISIN"]: row["LEI"] for row in csv.DictReader(f)}


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_change(
    pipeline: Pipeline, list_server: ListServer, gleif_tool: Path, tmp_path: Path
) -> None:
    """Kill -9 the worker while it writes the table and the topic; after a restart, nothing is lost.

    One kill, of a worker that has been processing for a while: the embedded broker does not
    always expire a member killed within seconds of joining its group (Kafka does, after the
    session timeout), which would leave the restarted worker without partitions.

    The list is synthetic (shared/tools/make_gleif_like.py, GLEIF's layout) because a crash
    in the middle needs a run that takes seconds, not milliseconds.
    """
    rows = 120_000
    day1 = tmp_path / "day1.csv"
    make_gleif(gleif_tool, day1, rows)
    expected = read_gleif(day1)
    result = pipeline.produce(list_server.add_file("day1.csv", day1))
    assert result.returncode == 0, result.stderr

    worker = pipeline.worker().start()
    worker.wait_healthy()
    wait_for("the worker to be mid-stream", lambda: worker.local_dedup()["events"] >= rows // 4, 120, interval=0.02)
    done = worker.local_dedup()
    assert done["markers"] < pipeline.partitions, f"the run was already complete, not mid-stream: {done}"
    worker.kill()
    # the same state directory: a restart of the same worker, not a new one
    restarted = pipeline.worker("w1-restarted")
    restarted.state_dir = worker.state_dir
    worker = restarted.start()
    worker.wait_healthy()

    def caught_up() -> bool:
        stats = worker.stats()
        return bool(stats["isins"] == rows and worker.local_dedup()["markers"] >= 1)

    wait_for("the restarted worker to catch up", caught_up, timeout=180)
    current = pipeline.current()
    assert len(current) == rows
    lei = {isin: rec["listings"][0]["attributes"]["lei"] for isin, rec in current.items()}
    assert lei == expected


@pytest.mark.slow
def test_wiped_state_is_recovered_from_the_compacted_topic(pipeline: Pipeline, list_server: ListServer) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(list_server.url("/data/nsdl_india-isin_ISIN_20240831.csv")).returncode == 0
    pipeline.wait_processed(15460, markers=pipeline.partitions)
    assert worker.stop() == 0
    shutil.rmtree(worker.state_dir)

    started = time.monotonic()
    worker = pipeline.worker("w1-wiped").start()
    worker.wait_healthy()
    stats = worker.stats()
    assert stats["isins"] == 15460, f"recovered {stats['isins']} after {time.monotonic() - started:.1f}s"
    # the recovered table is complete: a rerun emits nothing
    emitted = len(pipeline.items(pipeline.env["TOPIC_CURRENT"]))
    assert (
        pipeline.produce(list_server.url("/data/nsdl_india-isin_ISIN_20240831.csv"), "--force-publish").returncode == 0
    )
    pipeline.wait_processed(15460, markers=pipeline.partitions)
    assert worker.local_dedup()["unchanged"] == 15460
    assert len(pipeline.items(pipeline.env["TOPIC_CURRENT"])) == emitted
