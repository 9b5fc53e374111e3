"""Never delete on a bad read: misbehaving servers and broken lists against a real broker and worker.

The invariant each scenario checks is the one users care about: after the bad run, every ISIN
of the last good run is still in the table, the worker emitted no tombstone, and the runs
topic holds a final record for the run (never a RUNNING claim left behind).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, Produced, Worker, wait_for

NSE = "nse_EQUITY_L.csv"
ISIN_COLUMN = 6  # " ISIN NUMBER"


def nse_rows(shared_data: Path) -> tuple[list[str], list[list[str]]]:
    with (shared_data / NSE).open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def as_csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


class Source:
    """One source name, served at one path whose answer each step replaces."""

    def __init__(self, pipeline: Pipeline, server: ListServer, worker: Worker) -> None:
        self.pipeline = pipeline
        self.server = server
        self.worker = worker
        self.path = f"/list-{pipeline.suffix}.csv"
        self.events = 0
        self.markers = 0
        self.slot = 0

    def run(self, answer: Answer, *args: str) -> Produced:
        self.server.script(self.path, answer)
        self.slot += 1
        result = self.pipeline.produce(
            self.server.url(self.path), "--source-name", "nse", "--slot", f"2026-01-01T00:00:{self.slot:02d}Z", *args
        )
        assert result.summary is not None, result.stdout + result.stderr
        assert len(result.stdout.strip().splitlines()) == 1, "exactly one JSON summary"
        self.events += int(result.summary["published"])
        self.markers += self.pipeline.partitions if result.summary["markers"] else 0
        return result

    def settle(self) -> dict[str, Any]:
        """Until the worker processed every event and marker published so far."""
        return self.pipeline.wait_processed(self.events, markers=self.markers)

    def final_record(self, result: Produced) -> dict[str, Any]:
        assert result.summary is not None
        records = [r for r in self.pipeline.runs() if r["run_id"] == result.summary["run_id"]]
        assert records and records[-1]["status"] != "RUNNING", records
        return records[-1]


def test_bad_reads_never_delete_a_valid_isin(pipeline: Pipeline, list_server: ListServer, shared_data: Path) -> None:
    header, rows = nse_rows(shared_data)
    good = {row[ISIN_COLUMN] for row in rows}
    worker = pipeline.worker().start()
    worker.wait_healthy()
    source = Source(pipeline, list_server, worker)

    first = source.run(Answer(body=as_csv(header, rows)))
    assert first.returncode == 0 and first.summary and first.summary["status"] == "succeeded", first.stderr
    assert first.summary["distinct"] == 2387 and first.summary["layout"]["isin_column"] == "ISIN NUMBER"
    source.settle()

    def table_keeps_the_good_list(deleted: int = 0) -> None:
        stats = source.settle()
        assert sum(w["dedup"]["deleted"] for w in stats["workers"]) == deleted
        current = pipeline.current()
        assert good <= set(current), sorted(good - set(current))[:5]

    # 1. One stray quote: one dead letter, the rows after it are read, and its ISIN is kept.
    lines = (shared_data / NSE).read_bytes().split(b"\n")  # NSE quotes nothing: fields split on ","
    fields = lines[101].split(b",")
    fields[1] = b'"' + fields[1]
    lines[101] = b",".join(fields)
    body = b"\n".join(lines)
    result = source.run(Answer(body=body))
    assert result.returncode == 0, result.stderr
    s = result.summary
    assert s is not None and s["status"] == "succeeded"
    assert (s["unreadable"], s["valid"], s["kept"]) == (1, 2386, 1)
    assert source.final_record(result)["status"] == "SUCCEEDED"
    table_keeps_the_good_list()

    # 2. A body with no Content-Length, cut at 70% in the middle of a line: published, no deletions.
    whole = as_csv(header, rows)
    result = source.run(Answer(body=whole, no_length=True, truncate_to=int(len(whole) * 0.7)))
    assert result.returncode == 3, result.stderr
    s = result.summary
    assert s is not None and s["status"] == "suspicious" and s["markers"] is False
    assert any("connection closed" in d for d in s["doubts"]) and any("last line" in d for d in s["doubts"])
    assert source.final_record(result)["status"] == "SUSPICIOUS"
    table_keeps_the_good_list()

    # 3. The ISIN column renamed away, an "Underlying ISIN" column (other real ISINs) left.
    _, bse = read_bse(shared_data)
    swapped = [[*row[:ISIN_COLUMN], bse[i], *row[ISIN_COLUMN + 1 :]] for i, row in enumerate(rows)]
    renamed = [*header[:ISIN_COLUMN], "Underlying ISIN", *header[ISIN_COLUMN + 1 :]]
    result = source.run(Answer(body=as_csv(renamed, swapped)))
    assert result.returncode == 3, result.stderr
    s = result.summary
    assert s is not None and s["status"] == "suspicious"
    assert any("'Underlying ISIN'" in d and "'ISIN NUMBER'" in d for d in s["doubts"]), s["doubts"]
    table_keeps_the_good_list()

    # 4. A row of 2 MB: one dead letter (cut short), the run completes, its ISIN is kept. It is a
    # good run: it deletes what the suspicious run 3 added and no list has (the table mirrors).
    big = [list(r) for r in rows]
    big[10][1] = "X" * (2 * 1024 * 1024)
    result = source.run(Answer(body=as_csv(header, big)))
    assert result.returncode == 0, result.stderr
    s = result.summary
    assert s is not None and (s["status"], s["unreadable"], s["kept"]) == ("succeeded", 1, 1)
    added_by_3 = set(bse[: len(rows)]) - good
    table_keeps_the_good_list(deleted=len(added_by_3))
    assert added_by_3.isdisjoint(pipeline.current())

    # 5. An HTML page that mentions "ISIN,": a failed run, never a success with 0 ISINs.
    page = b"<html><head><title>Maintenance</title></head><body>ISIN, LEI and prices are back soon</body></html>"
    result = source.run(Answer(body=page, headers={"Content-Type": "text/csv"}))
    assert result.returncode == 1 and result.summary and result.summary["status"] == "failed"
    assert "no header with an ISIN column" in result.last_error_line
    assert source.final_record(result)["status"] == "FAILED"
    table_keeps_the_good_list(deleted=len(added_by_3))

    # 6. A real shrink of 6% is held back, then accepted with --allow-shrink: exactly those go.
    dropped = {row[ISIN_COLUMN] for row in rows[:150]}
    result = source.run(Answer(body=as_csv(header, rows[150:])))
    assert result.returncode == 3 and result.summary and result.summary["status"] == "suspicious"
    assert any("max_delete_fraction" in d for d in result.summary["doubts"])
    table_keeps_the_good_list(deleted=len(added_by_3))
    result = source.run(Answer(body=as_csv(header, rows[150:])), "--allow-shrink", "--force-publish")
    assert result.returncode == 0, result.stderr
    s = result.summary
    assert s is not None and s["status"] == "succeeded" and s["distinct"] == 2387 - 150
    # against the last successful run (step 4, whose 2 MB row was a dead letter: 2386 distinct)
    assert s["shrink"]["distinct_then"] == 2386 and s["shrink"]["deletions_at_least"] == 2386 - (2387 - 150)
    stats = source.settle()
    assert sum(w["dedup"]["deleted"] for w in stats["workers"]) == len(added_by_3) + 150
    current = set(pipeline.current())
    assert dropped.isdisjoint(current) and (good - dropped) <= current


def read_bse(shared_data: Path) -> tuple[list[str], list[str]]:
    with (shared_data / "bse_Equity.csv").open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, [r[7] for r in rows if len(r[7].strip()) == 12]


def runs_of(pipeline: Pipeline, result: Produced) -> list[str]:
    assert result.summary is not None
    return pipeline.run_statuses(str(result.summary["run_id"]))


def one_summary(result: Produced) -> dict[str, Any]:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    summary = json.loads(lines[0])
    assert summary["status"] in ("failed", "interrupted") and summary["reason"], summary
    return dict(summary)


def test_a_redirect_loop_fails_with_a_summary_and_a_final_record(pipeline: Pipeline, list_server: ListServer) -> None:
    a, b = f"/loop-a-{pipeline.suffix}", f"/loop-b-{pipeline.suffix}"
    list_server.script(a, Answer(status=302, headers={"Location": list_server.url(b)}))
    list_server.script(b, Answer(status=302, headers={"Location": list_server.url(a) + "?token=l00p-s3cret"}))
    result = pipeline.produce(list_server.url(a))
    assert result.returncode == 1 and "redirect loop" in result.last_error_line
    one_summary(result)
    assert runs_of(pipeline, result) == ["RUNNING", "FAILED"]
    assert "l00p-s3cret" not in result.stdout + result.stderr


def test_a_dripping_server_is_stopped_by_the_deadline(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    url = list_server.script(f"/drip-{pipeline.suffix}", Answer(file=shared_data / NSE, rate_bps=20))
    result = pipeline.produce(url, "--deadline", "3")
    assert result.returncode == 1 and "deadline" in result.last_error_line, result.stderr
    summary = one_summary(result)
    assert summary["rows"] == 0
    assert runs_of(pipeline, result) == ["RUNNING", "FAILED"]


def test_credentials_stay_with_their_origin(pipeline: Pipeline, list_server: ListServer, shared_data: Path) -> None:
    key, password = "k3y-origin-only", "pa55-origin-only"
    here, there = f"/here-{pipeline.suffix}", f"/there-{pipeline.suffix}.csv"
    elsewhere = list_server.url(there).replace("127.0.0.1", "localhost") + "?token=t0ken-s3cret"
    list_server.script(here, Answer(status=302, headers={"Location": elsewhere}))
    list_server.script(there, Answer(file=shared_data / NSE))
    pipeline.extra_env.update(
        {
            "SOURCE_HTTP_HEADERS": json.dumps({"X-Api-Key": key}),
            "SOURCE_USERNAME": "feed",
            "SOURCE_PASSWORD": password,
            "LOG_LEVEL": "DEBUG",
        }
    )
    result = pipeline.produce(list_server.url(here))
    assert result.returncode == 0, result.stderr
    first = list_server.hits(here)[0]
    assert first["X-Api-Key"] == key and first["Authorization"].startswith("Basic ")
    moved = list_server.hits(there + "?token=t0ken-s3cret")[0]
    assert "X-Api-Key" not in moved and "Authorization" not in moved
    output = result.stdout + result.stderr + json.dumps(pipeline.runs(), default=str)
    for secret in (key, password, "t0ken-s3cret"):
        assert secret not in output, secret


def test_a_late_cp1252_byte_is_decoded_not_replaced(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    # The real NSE list with one company name given a cp1252 right quote (0x92) on its last
    # row: no real legacy-encoded list was found, so a real list is converted.
    header, rows = nse_rows(shared_data)
    rows[-1][1] = rows[-1][1] + " \u2019S"
    body = as_csv(header, rows).decode().encode("cp1252")
    url = list_server.script(f"/cp1252-{pipeline.suffix}.csv", Answer(body=body))
    result = pipeline.produce(url)
    assert result.returncode == 0, result.stderr
    assert result.summary and result.summary["layout"]["encoding"] == "cp1252"
    events = [i for i in pipeline.items(pipeline.env["TOPIC_RAW"]) if i.key == rows[-1][ISIN_COLUMN]]
    assert events and events[0].record is not None
    assert events[0].record["attributes"]["name_of_company"].endswith(" \u2019S")


def test_records_delivered_again_after_a_kill_change_nothing(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    """Kafka delivers at least once: a worker killed after its sweeps and before it committed
    its offsets gets every record again from its last commit. Nothing may be applied twice:
    end-of-run markers applied again once swept with their runs' keys already dropped, and
    deleted every listing of their partitions (a bench run caught 160,932 tombstones)."""
    pipeline.extra_env["COMMIT_INTERVAL_S"] = "3600"  # no offset commit before the kill
    header, rows = nse_rows(shared_data)
    worker = pipeline.worker().start()
    worker.wait_healthy()
    source = Source(pipeline, list_server, worker)
    assert source.run(Answer(body=as_csv(header, rows))).returncode == 0
    source.settle()
    second = source.run(Answer(body=as_csv(header, rows[10:])))  # 10 ISINs fewer: 0.4 %, a clean shrink
    assert second.returncode == 0 and second.summary and second.summary["markers"] is True
    stats = source.settle()
    assert sum(w["dedup"]["deleted"] for w in stats["workers"]) == 10
    emitted = len(pipeline.items(pipeline.env["TOPIC_CURRENT"]))
    worker.kill()

    again = pipeline.worker("w1-again")
    again.state_dir = worker.state_dir  # the same worker, restarted
    again.start().wait_healthy()
    records = source.events + source.markers

    def caught_up() -> dict[str, Any] | None:
        d = again.local_dedup()
        return d if d["redelivered"] + d["events"] + d["markers"] >= records else None

    d = wait_for(f"the restarted worker to get all {records} records again", caught_up, 120, interval=0.1)
    assert d["redelivered"] == records, f"the offsets were committed after all; the test proves nothing: {d}"
    assert (d["new"], d["changed"], d["deleted"]) == (0, 0, 0), d
    assert len(pipeline.items(pipeline.env["TOPIC_CURRENT"])) == emitted, "nothing emitted again"
    assert set(pipeline.current()) == {row[ISIN_COLUMN] for row in rows[10:]}
