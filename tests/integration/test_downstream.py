"""Tools for downstream teams: tail, replay (offset resets), rebuild."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Producer

from core.kafka import partition_for
from schemas import CURRENT_RECORD, make_serde
from stream_app.records import merge_event
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, wait_for

NSE = "/data/nse_EQUITY_L.csv"


def a_moment_between() -> datetime:
    """An instant strictly after every record written so far and before any written next: record
    timestamps are milliseconds, so the clock only has to move past it by a few of them."""
    mark = datetime.now(UTC)
    wait_for("the clock to move past the mark", lambda: datetime.now(UTC) > mark + timedelta(milliseconds=5), 5, 0.005)
    return mark


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_tail_decodes_every_topic(pipeline: Pipeline, list_server: ListServer) -> None:
    assert pipeline.produce(list_server.url("/data/bse_Equity.csv")).returncode == 0
    raw = pipeline.cli("tail", "--topic", "raw", "--from-beginning", "--max-messages", "5")
    assert raw.returncode == 0, raw.stderr
    items = json_lines(raw.stdout)
    assert len(items) == 5
    first = items[0]
    assert first["schema"] == "io.isinpipeline.v1.IsinEvent"
    assert isinstance(first["value"], dict) and first["value"]["isin"] == first["key"]
    assert first["value"]["run_id"]  # type: ignore[index]

    dlq = json_lines(pipeline.cli("tail", "--topic", "dlq").stdout)
    assert sorted(d["value"]["line"] for d in dlq) == [1327, 2093]  # type: ignore[index]

    # from offsets: partition 0 from its 3rd record, and only the partitions named
    everything = json_lines(pipeline.cli("tail", "--topic", "raw").stdout)
    later = json_lines(pipeline.cli("tail", "--topic", "raw", "--from-offset", "0:3").stdout)
    assert len(later) == len([i for i in everything if i["partition"] == 0]) - 3
    assert {i["partition"] for i in later} == {0} and min(i["offset"] for i in later) == 3

    table = pipeline.cli("tail", "--topic", "dlq", "--format", "table")
    assert table.returncode == 0 and "line 1327" in table.stdout


def test_tail_from_a_timestamp(pipeline: Pipeline, list_server: ListServer) -> None:
    assert pipeline.produce(list_server.url(NSE)).returncode == 0
    between = a_moment_between()
    second = pipeline.produce(list_server.url(NSE), "--force-publish")
    assert second.returncode == 0 and second.summary is not None and second.summary["status"] == "succeeded"
    items = json_lines(pipeline.cli("tail", "--topic", "raw", "--from-timestamp", between.isoformat()).stdout)
    assert len([i for i in items if i["key"]]) == 2387
    assert {i["value"]["run_id"] for i in items} == {second.summary["run_id"]}  # type: ignore[index]
    future = pipeline.cli("tail", "--topic", "raw", "--from-timestamp", "2999-01-01T00:00:00Z")
    assert future.returncode == 0 and future.stdout == ""


def consume_group(bootstrap: str, group: str, topic: str, seconds: float = 8.0) -> list[tuple[int, int, bytes | None]]:
    """A downstream consumer: reads what its group has not committed yet, commits, leaves."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 50,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[int, int, bytes | None]] = []
    deadline = time.monotonic() + seconds
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, timeout=0.3)
            for m in msgs:
                if m.error() is None:
                    got.append((m.partition() or 0, m.offset() or 0, m.key()))
            if msgs:
                quiet_since = time.monotonic()
                consumer.commit(asynchronous=False)
            elif got and time.monotonic() - quiet_since > 2:
                break
    finally:
        consumer.close()
    return got


def test_replay_to_a_timestamp_gives_the_same_records(pipeline: Pipeline, list_server: ListServer) -> None:
    bootstrap, raw = pipeline.bootstrap, pipeline.env["TOPIC_RAW"]
    group = f"downstream-{pipeline.suffix}"
    assert pipeline.produce(list_server.url(NSE)).returncode == 0
    assert len(consume_group(bootstrap, group, raw)) == 2387 + pipeline.partitions
    mark = a_moment_between().isoformat()
    assert pipeline.produce(list_server.url("/data/bse_Equity.csv")).returncode == 0
    second = consume_group(bootstrap, group, raw)
    assert len(second) == 4924 + pipeline.partitions

    dry = pipeline.cli(
        "replay", "--group", group, "--topic", "raw", "--to-timestamp", mark, "--dry-run", "--format", "json"
    )
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert all(row["after"] < row["before"] for row in report["partitions"])
    assert consume_group(bootstrap, group, raw, seconds=4) == []  # dry run: nothing moved

    done = pipeline.cli("replay", "--group", group, "--topic", "raw", "--to-timestamp", mark, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert sorted(consume_group(bootstrap, group, raw)) == sorted(second)


def test_replay_refuses_a_group_with_live_members(pipeline: Pipeline, list_server: ListServer) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    result = pipeline.cli("replay", "--group", pipeline.env["APP_ID"], "--topic", "raw", "--to-earliest")
    assert result.returncode == 1
    assert "is active" in result.last_error_line and "stop its consumers" in result.last_error_line
    bad = pipeline.cli("replay", "--group", "g", "--topic", "raw", "--to-offset", "0:x")
    assert bad.returncode == 2 and "PARTITION:OFFSET" in bad.last_error_line


def index_view(pipeline: Pipeline) -> dict[bytes, bytes]:
    """The identifier topic as its last value per key (tombstones applied), read raw: its values
    are ISINs, not Avro records."""
    from confluent_kafka import OFFSET_BEGINNING

    from core.kafka.offsets import end_offsets
    from core.kafka.ranges import read_ranges

    conf, topic = pipeline.settings().confluent_config(), pipeline.env["TOPIC_IDENTIFIERS"]
    parts = list(range(pipeline.partitions))
    ends = {p: off for (_, p), off in end_offsets(conf, [(topic, p) for p in parts]).items()}
    view: dict[bytes, bytes] = {}
    starts = dict.fromkeys(parts, OFFSET_BEGINNING)
    for batch in read_ranges(conf, topic, starts, ends, group=f"it-{pipeline.suffix}-index"):
        for msg in batch:
            key, value = msg.key(), msg.value()
            assert key is not None
            if value is None:
                view.pop(key, None)
            else:
                view[key] = value
    return view


def test_rebuild_reproduces_the_table_and_repairs_the_compacted_topic(
    pipeline: Pipeline, list_server: ListServer, tmp_path: Path
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(list_server.url(NSE), "--source-name", "nse").returncode == 0
    pipeline.wait_processed(2387, markers=pipeline.partitions)
    before = pipeline.current()
    refused = pipeline.cli("rebuild")
    assert refused.returncode == 1 and "is active" in refused.last_error_line
    assert worker.stop() == 0
    force = pipeline.idle_group_flags()

    same = pipeline.cli("rebuild", *force)
    assert same.returncode == 0, same.stderr
    assert same.summary is not None
    assert (same.summary["isins"], same.summary["changed"], same.summary["removed"], same.summary["written"]) == (
        2387,
        0,
        0,
        0,
    )
    assert pipeline.current() == before
    index_before = index_view(pipeline)
    assert len(index_before) == 2387  # every NSE ISIN by its ticker (SYMBOL); IN ISINs derive nothing
    assert (same.summary["index_entries"], same.summary["index_changed"], same.summary["index_removed"]) == (
        2387,
        0,
        0,
    )

    # Damage the identifier index: one entry lost (a tombstone), one entry no record gives.
    lost = b"ticker=20MICRONS|INE144J01027"
    assert index_before[lost] == b"INE144J01027"
    index_topic = pipeline.env["TOPIC_IDENTIFIERS"]
    damage = Producer({"bootstrap.servers": pipeline.bootstrap})
    for key, value in ((lost, None), (b"ticker=STRAY|INE000000000", b"INE000000000")):
        damage.produce(index_topic, value, key, partition=partition_for(key.rsplit(b"|", 1)[0], pipeline.partitions))
    assert damage.flush(10) == 0
    assert lost not in index_view(pipeline)

    # Damage the compacted topic: one record with wrong attributes, one ISIN that no list has.
    serde, topic, n = make_serde(None), pipeline.env["TOPIC_CURRENT"], pipeline.partitions
    wrong = dict(before["INE144J01027"])
    bogus_event = {
        "isin": "US0378331005",
        "country_code": "US",
        "source": "nse",
        "run_id": "x",
        "line": 1,
        "attributes": {"symbol": "AAPL"},
        "content_hash": "0" * 16,
        "published_at": 0,
    }
    damaged = merge_event(None, {**bogus_event, "isin": "INE144J01027", "country_code": "IN"})
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    for isin, record in (("INE144J01027", damaged), ("US0378331005", merge_event(None, bogus_event))):
        producer.produce(
            topic, serde.encode(topic, CURRENT_RECORD, record), isin.encode(), partition=partition_for(isin.encode(), n)
        )
    assert producer.flush(10) == 0
    assert pipeline.current()["INE144J01027"]["listings"][0]["attributes"] == {"symbol": "AAPL"}

    repaired = pipeline.cli("rebuild", *force)
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.summary is not None
    assert (repaired.summary["changed"], repaired.summary["removed"]) == (1, 1)
    assert (repaired.summary["index_changed"], repaired.summary["index_removed"]) == (1, 1)
    assert index_view(pipeline) == index_before
    # one partition at a time: a line for each, in order, each repair in its ISIN's partition
    per_partition = {
        int(m["p"]): (int(m["isins"]), int(m["changed"]), int(m["removed"]))
        for m in re.finditer(
            r"rebuild: partition (?P<p>\d+) \(\d+ of \d+\): \d+ raw events, (?P<isins>\d+) ISINs, "
            r"(?P<changed>\d+) changed, (?P<removed>\d+) removed",
            repaired.stderr,
        )
    }
    assert list(per_partition) == list(range(n))
    assert sum(isins for isins, _, _ in per_partition.values()) == repaired.summary["isins"] == 2387
    fixed, gone = partition_for(b"INE144J01027", n), partition_for(b"US0378331005", n)
    assert {p: c for p, (_, c, _) in per_partition.items() if c} == {fixed: 1}
    assert {p: r for p, (_, _, r) in per_partition.items() if r} == {gone: 1}
    after = pipeline.current()
    assert set(after) == set(before)
    assert after["INE144J01027"]["listings"][0]["attributes"] == wrong["listings"][0]["attributes"]

    # the same worker, restarted on its old state, recovers the repair from the changelog
    state_dir = worker.state_dir
    worker = pipeline.worker("w1-again")
    worker.state_dir = state_dir
    worker.start()
    worker.wait_healthy()
    assert worker.get("/isins/US0378331005")[0] == 404
    assert worker.get("/isins/INE144J01027")[1]["listings"][0]["attributes"]["symbol"] == "20MICRONS"
    # and its identifier index, fed from the repaired topic, finds the entry again and not the stray
    found = wait_for(
        "the repaired index entry in the worker's lookups",
        lambda: (r := worker.get("/lookup?ticker=20MICRONS"))[0] == 200 and r[1]["count"] and r[1],
        60,
    )
    assert [item["isin"] for item in found["items"]] == ["INE144J01027"]
    stray = worker.get("/lookup?ticker=STRAY")
    assert stray[0] == 200 and stray[1]["items"] == [], stray
