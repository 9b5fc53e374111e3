"""``isin-pipeline produce`` against a real broker and a real loopback HTTP server."""

from __future__ import annotations

import gzip
import os
from collections import Counter
from pathlib import Path

from core.kafka import partition_for
from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, Produced


def test_nse_list_publishes_every_isin_keyed_and_partitioned_like_java(
    pipeline: Pipeline, list_server: ListServer
) -> None:
    result = pipeline.produce(list_server.url("/data/nse_EQUITY_L.csv"))
    assert result.returncode == 0, result.stderr
    s = result.summary
    assert s is not None
    assert (s["status"], s["rows"], s["valid"], s["invalid"], s["published"]) == ("succeeded", 2387, 2387, 0, 2387)
    assert s["source"] == list_server.url("/data/nse_EQUITY_L.csv")
    assert set(s) >= {"run_id", "source", "rows", "valid", "invalid", "published", "duration_s"}
    assert len(result.stdout.strip().splitlines()) == 1

    items = pipeline.items(pipeline.env["TOPIC_RAW"])
    events = [i for i in items if i.key is not None]
    markers = [i for i in items if i.key is None]
    assert len(events) == 2387
    assert all(i.record is not None and i.record["isin"] == i.key for i in events)
    # murmur2, as Java, aiokafka and Faust partition: the same ISIN lands in the same partition everywhere
    assert all(i.partition == partition_for(i.key.encode(), pipeline.partitions) for i in events if i.key)
    assert all(i.record is not None and i.record["run_id"] == s["run_id"] for i in events)
    # one end-of-run marker per partition, after that partition's events, with its count
    assert sorted(m.partition for m in markers) == list(range(pipeline.partitions))
    per_partition = Counter(i.partition for i in events)
    for m in markers:
        assert m.record is not None and m.record["events"] == per_partition[m.partition]
        assert m.offset > max(i.offset for i in events if i.partition == m.partition)
    sample = next(i for i in events if i.key == "INE144J01027")
    assert sample.record is not None and sample.record["attributes"]["symbol"] == "20MICRONS"


def test_bse_list_dead_letters_the_two_placeholders(pipeline: Pipeline, list_server: ListServer) -> None:
    result = pipeline.produce(list_server.url("/data/bse_Equity.csv"))
    assert result.returncode == 0, result.stderr
    s = result.summary
    assert s is not None
    assert (s["rows"], s["valid"], s["invalid"], s["published"], s["dead_lettered"]) == (4926, 4924, 2, 4924, 2)
    dead = pipeline.items(pipeline.env["TOPIC_DLQ"])
    got = sorted((d.record["line"], d.record["error"], d.record["raw"].split(",")[7].strip()) for d in dead if d.record)
    assert got == [(1327, "INVALID_FORMAT", "-"), (2093, "INVALID_LENGTH", "NA")]
    assert all(d.record and d.record["run_id"] == s["run_id"] and d.record["reason"] for d in dead)


def test_gzip_and_preamble_lists(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    gz = tmp_path / "nsdl.csv.gz"
    gz.write_bytes(gzip.compress((shared_data / "nsdl_india-isin_ISIN_20240831.csv").read_bytes()))
    result = pipeline.produce(list_server.add_file("nsdl.csv.gz", gz))
    assert result.returncode == 0, result.stderr
    assert result.summary and result.summary["valid"] == 15460 and result.summary["layout"]["container"] == "gzip"
    xetra = pipeline.produce(list_server.url("/data/xetra_t7-xetr-allTradableInstruments_20190418.csv"))
    assert xetra.returncode == 0, xetra.stderr
    assert xetra.summary and xetra.summary["valid"] == 2577 and xetra.summary["layout"]["header_row"] == 3


def assert_failed(result: object, *fragments: str) -> None:
    from tests.integration.support import Produced

    assert isinstance(result, Produced)
    assert result.returncode != 0, result.stdout
    line = result.last_error_line
    assert line.startswith("isin-pipeline produce: error: "), result.stderr
    for fragment in fragments:
        assert fragment in line, line


def test_unreachable_url(pipeline: Pipeline) -> None:
    from core.broker import free_port

    result = pipeline.produce(f"http://127.0.0.1:{free_port()}/list.csv")
    assert_failed(result, "ConnectError", "gave up after 2 attempts")


def test_http_error(pipeline: Pipeline, list_server: ListServer) -> None:
    assert_failed(pipeline.produce(list_server.url("/data/no-such-list.csv")), "HTTP 404")


def test_a_page_that_is_not_a_list(pipeline: Pipeline, list_server: ListServer) -> None:
    url = list_server.script("/maintenance.html", Answer(body=b"<html><body>Down for maintenance</body></html>\n"))
    assert_failed(pipeline.produce(url), "no header with an ISIN column")


def test_broker_down(pipeline: Pipeline, list_server: ListServer) -> None:
    from core.broker import free_port

    env = {**pipeline.env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "KAFKA_CONNECT_TIMEOUT_S": "3"}
    result = pipeline.cli("produce", "--source", list_server.url("/data/nse_EQUITY_L.csv"), env=env)
    assert_failed(result, "cannot reach Kafka at 127.0.0.1:")


def test_a_truncated_file_fails_the_run_as_a_whole(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    data = gzip.compress((shared_data / "nsdl_india-isin_ISIN_20240831.csv").read_bytes())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = pipeline.produce(list_server.add_file("cut.csv.gz", cut))
    assert_failed(result, "truncated")
    # the summary says how far it got, and the run is recorded as failed, with the reason:
    # the whole file is checked (it is decoded once before any row is published), so a cut
    # gzip fails before its first row, not two thirds into it
    assert result.summary is not None and result.summary["status"] == "failed"
    assert result.summary["rows"] == 0 and result.summary["published"] == 0
    runs = [i.record for i in pipeline.items(pipeline.env["TOPIC_RUNS"]) if i.record]
    assert pipeline.run_statuses(result.summary["run_id"]) == ["RUNNING", "FAILED"]
    assert "truncated" in runs[-1]["reason"]
    # the run was one transaction, aborted: no end-of-run markers, no events, so no deletes follow
    items = pipeline.items(pipeline.env["TOPIC_RAW"])
    assert items == []


def test_truncated_http_body_fails_clearly(pipeline: Pipeline, list_server: ListServer, shared_data: Path) -> None:
    src = shared_data / "nse_EQUITY_L.csv"
    url = list_server.script("/cut.csv", Answer(file=src, truncate_to=1000))
    assert_failed(pipeline.produce(url), "gave up after 2 attempts")
    assert len(list_server.hits("/cut.csv")) == 2


def test_progress_bar_on_a_terminal_and_log_lines_otherwise(pipeline: Pipeline, list_server: ListServer) -> None:
    import pty
    import subprocess
    import sys

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "isin_pipeline", "produce", "--source", list_server.url("/data/bse_Equity.csv")],
            env={**pipeline.env, "COLUMNS": "120"},
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
            check=False,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "download" in terminal and "4,926 rows" in terminal and "━" in terminal  # rich's bar
    piped = pipeline.produce(list_server.url("/data/bse_Equity.csv"), "--force-publish")
    assert "━" not in piped.stderr and "\x1b[" not in piped.stderr


def one_process_then_ranges(
    pipeline: Pipeline, url: str, names: tuple[str, str], *second: str
) -> tuple[Produced, Produced]:
    """A list produced by the run's process alone, then read in byte ranges by two processes."""
    one = pipeline.cli(
        "produce", "--source", url, "--source-name", names[0], env={**pipeline.env, "PRODUCER_WORKERS": "1"}
    )
    ranges = {**pipeline.env, "PRODUCER_WORKERS": "2", "PRODUCER_PARALLEL_MIN_BYTES": "0"}
    two = pipeline.cli("produce", "--source", url, "--source-name", names[1], *second, env=ranges)
    return one, two


def run_events(pipeline: Pipeline, run_id: str, leave_out: tuple[str, ...]) -> list[tuple[object, ...]]:
    """A run's events in the raw topic as (partition, key, every field but ``leave_out``), partition
    by partition: a partition's records come in its order; how partitions interleave depends on
    fetches."""
    got = []
    for i in pipeline.items(pipeline.env["TOPIC_RAW"]):
        r = i.record
        if r is not None and r.get("run_id") == run_id and i.key is not None:
            fields = {k: v for k, v in r.items() if k not in leave_out}
            got.append((i.partition, i.key, tuple(sorted(fields.items(), key=str))))
    return sorted(got, key=lambda event: str(event[0]))


def test_reading_on_every_core_publishes_what_one_process_does(pipeline: Pipeline, list_server: ListServer) -> None:
    """The real BSE list (unquoted, with invalid placeholders and trailing empty fields), read by
    one process and then in byte ranges by two worker processes: the same events, dead letters
    and counts."""
    one, two = one_process_then_ranges(pipeline, list_server.url("/data/bse_Equity.csv"), ("one", "two"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert one.summary and two.summary
    assert "processes" not in one.summary["layout"] and two.summary["layout"]["processes"] == 2
    # every range has values to strip ("A " in the Group column): the row loop reads them all
    assert two.summary["layout"]["ranges"] > 1 and two.summary["layout"]["ranges_as_columns"] == 0
    for key in ("rows", "valid", "invalid", "unreadable", "distinct", "published", "dead_lettered"):
        assert one.summary[key] == two.summary[key], key

    # the runs' own names (and so their content hashes) and times differ; every other field must not
    def events(run_id: str) -> list[tuple[object, ...]]:
        return run_events(pipeline, run_id, ("run_id", "source", "content_hash", "published_at", "slot"))

    first, second = events(one.summary["run_id"]), events(two.summary["run_id"])
    assert len(first) == 4924 and first == second  # in the same order, partition by partition
    dead = [i.record for i in pipeline.items(pipeline.env["TOPIC_DLQ"]) if i.record]
    ignored = {"run_id", "source", "recorded_at"}  # the two runs' own names and times

    def whole(run_id: str) -> list[dict[str, object]]:
        return sorted(
            ({k: v for k, v in d.items() if k not in ignored} for d in dead if d["run_id"] == run_id),
            key=lambda d: str(d["line"]),
        )

    assert whole(one.summary["run_id"]) == whole(two.summary["run_id"])
    assert [(d["line"], d["error"]) for d in whole(one.summary["run_id"])] == [
        (1327, "INVALID_FORMAT"),
        (2093, "INVALID_LENGTH"),
    ]


def test_a_plain_list_read_as_columns_publishes_what_one_process_does(
    pipeline: Pipeline, list_server: ListServer
) -> None:
    """The real NSE list (plain: the same fields on every line, no value to strip, every ISIN
    valid), read by one process and then again, in byte ranges read as columns: the same events,
    field for field but the run's own id, time and slot."""
    url = list_server.url("/data/nse_EQUITY_L.csv")
    one, two = one_process_then_ranges(pipeline, url, ("nse-plain", "nse-plain"), "--force-publish")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert one.summary and two.summary
    layout = two.summary["layout"]
    assert layout["ranges"] > 1 and layout["ranges_as_columns"] == layout["ranges"]
    for key in ("rows", "valid", "invalid", "distinct", "published"):
        assert one.summary[key] == two.summary[key], key

    def events(run_id: str) -> list[tuple[object, ...]]:
        return run_events(pipeline, run_id, ("run_id", "published_at", "slot"))

    rows, columns = events(one.summary["run_id"]), events(two.summary["run_id"])
    assert len(rows) == 2387 and rows == columns
