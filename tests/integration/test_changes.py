"""The change topic: every change of every source's listing, once, dated by slot and by the worker."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from stdnum import isin as stdnum_isin

from tests.conftest import REPO
from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, wait_for

NSE = "nse_EQUITY_L.csv"
DAY1, DAY2, DAY3 = "2026-12-01T07:00:00Z", "2026-12-02T07:00:00Z", "2026-12-03T07:00:00Z"


def day2_of(shared_data: Path) -> tuple[bytes, set[str], str]:
    """The real NSE list with its last three rows gone and one company renamed."""
    text = (shared_data / NSE).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    dropped = {row[6].strip() for row in body[-3:]}
    renamed = body[0][6].strip()
    body = [list(r) for r in body[:-3]]
    body[0][1] = body[0][1] + " (renamed)"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    return out.getvalue().encode(), dropped, renamed


def nse_rows(body: bytes) -> dict[str, dict[str, str]]:
    """The true listing of each ISIN of an NSE list: its other columns, as the reader names them."""
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    names = [h.strip().lower().replace(" ", "_") for h in rows[0]]
    out = {}
    for row in rows[1:]:
        values = dict(zip(names, (v.strip() for v in row), strict=True))
        isin = values.pop("isin_number")
        out[isin] = {k: v for k, v in values.items() if v}
    return out


def changes(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [i.record for i in pipeline.items(pipeline.env["TOPIC_CHANGES"]) if i.record]


def test_days_of_one_list_leave_exactly_their_changes(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    path = f"/changes-{pipeline.suffix}.csv"
    body2, dropped, renamed = day2_of(shared_data)
    url = list_server.script(path, Answer(file=shared_data / NSE))
    first = pipeline.produce(url, "--slot", DAY1)
    assert first.summary is not None and first.summary["status"] == "succeeded"
    pipeline.wait_processed(2387, markers=pipeline.partitions)
    day1 = wait_for("2387 changes", lambda: (c := changes(pipeline)) and len(c) >= 2387 and c, 60)
    assert Counter(c["op"] for c in day1) == {"LISTED": 2387}
    assert {c["slot"].strftime("%Y-%m-%dT%H:%M:%SZ") for c in day1} == {DAY1}
    assert len({c["change_id"] for c in day1}) == 2387

    list_server.script(path, Answer(body=body2))
    second = pipeline.produce(url, "--slot", DAY2)
    assert second.summary is not None and second.summary["status"] == "succeeded", second.summary
    pipeline.wait_processed(2387 + 2384, markers=2 * pipeline.partitions)
    run2 = second.summary["run_id"]

    def of_day2() -> list[dict[str, Any]] | None:
        found = [c for c in changes(pipeline) if c["run_id"] == run2]
        return found if len(found) >= 4 else None

    day2 = wait_for("the day's changes", of_day2, 60)
    got = sorted((c["op"], c["isin"]) for c in day2)
    assert got == sorted([("AMENDED", renamed), *(("DELISTED", isin) for isin in dropped)])
    amended = next(c for c in day2 if c["op"] == "AMENDED")
    assert amended["changed"] == ["name_of_company"] and amended["after"]["name_of_company"].endswith("(renamed)")
    assert len(changes(pipeline)) == 2387 + 4
    assert {c["slot"].strftime("%Y-%m-%dT%H:%M:%SZ") for c in day2} == {DAY2}

    third = pipeline.produce(url, "--slot", DAY3, "--force-publish")  # the same list again
    assert third.summary is not None and third.summary["status"] == "succeeded"
    pipeline.wait_processed(2387 + 2 * 2384, markers=3 * pipeline.partitions)
    assert len(changes(pipeline)) == 2387 + 4, "an unchanged list wrote changes"

    # a mirror kept from the change topic alone equals the table's snapshot, listing by listing
    mirror = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "mirror_from_changes.py"),
            "--bootstrap",
            pipeline.bootstrap,
            "--topic",
            pipeline.env["TOPIC_CHANGES"],
            "--group",
            f"mirror-{pipeline.suffix}",
            "--from-beginning",
            "--idle-exit",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    mirrored = {row["isin"]: row["listings"] for row in map(json.loads, mirror.stdout.splitlines())}
    table = {
        isin: {listing["source"]: listing["attributes"] for listing in record["listings"]}
        for isin, record in pipeline.current().items()
    }
    assert len(table) == 2384 and mirrored == table


def test_history_and_as_of_for_every_day_and_after_a_wiped_state_dir(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    path = f"/history-{pipeline.suffix}.csv"
    body2, dropped, renamed = day2_of(shared_data)
    url = list_server.script(path, Answer(file=shared_data / NSE), Answer(body=body2), Answer(file=shared_data / NSE))
    for n, slot in enumerate((DAY1, DAY2, DAY3), start=1):
        run = pipeline.produce(url, "--slot", slot, "--force-publish")
        assert run.summary is not None and run.summary["status"] == "succeeded", run.summary
        pipeline.wait_processed(2387 * n - 3 * (n > 1), markers=n * pipeline.partitions)
    gone = sorted(dropped)[0]
    nse = list_server.url(path)

    def history(isin: str) -> list[tuple[str, str]] | None:
        status, body = worker.get(f"/isins/{isin}/history")
        if status != 200:
            return None
        return [(c["op"], c["slot"][:10]) for c in body["changes"]]

    want_gone = [("LISTED", DAY1[:10]), ("DELISTED", DAY2[:10]), ("LISTED", DAY3[:10])]
    assert wait_for("the history of a dropped ISIN", lambda: history(gone) == want_gone and history(gone), 60)
    # each partition's history is read back from the change topic a fetch after it was written
    want_renamed = [("LISTED", DAY1[:10]), ("AMENDED", DAY2[:10]), ("AMENDED", DAY3[:10])]
    assert wait_for("the history of the renamed ISIN", lambda: history(renamed) == want_renamed, 60)
    status, body = worker.get(f"/isins/{gone}/history?source=elsewhere")
    assert status == 200 and body["changes"] == []

    # as of each day: exactly that day's list, for the ISINs that changed and one that did not
    steady = "INE253B01015"
    for day, listed in ((DAY1, True), (DAY2, False), (DAY3, True)):
        status, record = worker.get(f"/isins/{gone}?as_of={day.replace('07:00:00', '08:00:00')}")
        assert status == (200 if listed else 404), (day, record)
        if listed:
            assert [item["source"] for item in record["listings"]] == [nse]
        status, record = worker.get(f"/isins/{steady}?as_of={day.replace('07:00:00', '08:00:00')}")
        assert status == 200 and record["listings"][0]["attributes"]["symbol"] == "21STCENMGM"
    status, record = worker.get(f"/isins/{renamed}?as_of={DAY2.replace('07:00:00', '08:00:00')}")
    assert record["listings"][0]["attributes"]["name_of_company"].endswith("(renamed)")
    assert worker.get(f"/isins/{gone}?as_of=2026-11-30")[0] == 404  # before any list had it
    assert worker.get(f"/isins/{gone}?as_of=yesterday")[0] == 400

    # the same from the change topic alone, with the command line (no worker needed)
    cli = pipeline.cli("history", gone, "--format", "json")
    assert cli.returncode == 0, cli.stderr
    assert [(c["op"], c["slot"][:10]) for c in map(json.loads, cli.stdout.splitlines())] == want_gone
    diff = pipeline.cli("changes", "--source", nse, "--since", DAY2, "--until", DAY3)
    assert diff.returncode == 0, diff.stderr
    day2 = sorted((c["op"], c["isin"]) for c in map(json.loads, diff.stdout.splitlines()))
    assert day2 == sorted([("AMENDED", renamed), *(("DELISTED", isin) for isin in dropped)])
    truths = {DAY1: nse_rows(shared_data.joinpath(NSE).read_bytes()), DAY2: nse_rows(body2)}
    truths[DAY3] = truths[DAY1]
    for day, truth in truths.items():
        out = pipeline.tmp / f"as-of-{day[:10]}.jsonl"
        snap = pipeline.cli("snapshot", "--as-of", day.replace("07:00:00", "08:00:00"), "--out", str(out))
        assert snap.returncode == 0, snap.stderr
        got = {r["isin"]: r["listings"][0]["attributes"] for r in map(json.loads, out.read_text().splitlines())}
        assert got == truth, day
        assert all(len(r["listings"]) == 1 for r in map(json.loads, out.read_text().splitlines()))

    # a worker whose state directory is wiped restores its history from the change topic
    before = {isin: history(isin) for isin in (gone, renamed, steady)}
    assert worker.stop() == 0
    for child in sorted(worker.state_dir.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    worker.start()
    worker.wait_healthy()
    assert wait_for("the history restored", lambda: {i: history(i) for i in before} == before, 90)


def test_a_worker_killed_between_its_flush_and_its_table_write_loses_and_doubles_no_change(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    """The worker is killed after the records and their changes were acknowledged and before its
    table write. Restarted, it recovers the table from the changelog (which has those records) and
    goes on: every change once, under one id each; a change sent again would keep its id."""
    first = pipeline.worker()
    first.env = {**first.env, "ISIN_PIPELINE_FAILPOINTS": "dedup.flushed"}
    first.start()
    first.wait_healthy()
    run = pipeline.produce(list_server.url(f"/data/{NSE}"), "--slot", DAY1)
    assert run.summary is not None and run.summary["status"] == "succeeded"
    wait_for("the failpoint", lambda: "failpoint dedup.flushed reached" in first.tail(), 60)
    before = changes(pipeline)
    assert before, "the killed worker's first batch sent its changes"
    first.kill()

    again = pipeline.worker("w2")
    again.state_dir = first.state_dir
    again.start()
    again.wait_healthy()
    pipeline.wait_processed(2387, markers=pipeline.partitions)
    every = wait_for(
        "all the changes", lambda: (c := changes(pipeline)) and len({x["change_id"] for x in c}) >= 2387 and c, 60
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for change in every:
        by_id.setdefault(change["change_id"], []).append(change)
    assert len(by_id) == 2387  # one id per fact: nothing lost, nothing under a second id
    assert {(c[0]["op"], c[0]["isin"]) for c in by_id.values()} == {
        ("LISTED", i) for i in nse_rows((shared_data / NSE).read_bytes())
    }
    assert all(len({(x["op"], x["isin"], x["run_id"]) for x in c}) == 1 for c in by_id.values())
    sample = sorted(by_id.values(), key=len)[-1][0]["isin"]  # a change sent twice, if any was
    _, body = wait_for("the history", lambda: (r := again.get(f"/isins/{sample}/history"))[0] == 200 and r, 60)
    assert [c["op"] for c in body["changes"]] == ["LISTED"]


def test_two_sources_listing_the_same_isins_keep_a_history_each(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    """NSE and BSE list 2,258 of the same ISINs; on day 2 BSE stops listing five that NSE keeps."""
    worker = pipeline.worker().start()
    worker.wait_healthy()
    nse = set(nse_rows((shared_data / NSE).read_bytes()))
    with (shared_data / "bse_Equity.csv").open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    bse = {r[7].strip() for r in rows if stdnum_isin.is_valid(r[7].strip())}
    both = sorted(nse & bse)
    assert len(both) > 2000
    dropped = set(both[::500])
    day2 = io.StringIO()
    csv.writer(day2, lineterminator="\n").writerows([header, *(r for r in rows if r[7].strip() not in dropped)])
    nse_file, bse_file = Answer(file=shared_data / NSE), Answer(file=shared_data / "bse_Equity.csv")
    urls = {
        "nse": list_server.script(f"/nse-{pipeline.suffix}.csv", nse_file, nse_file),
        "bse": list_server.script(f"/bse-{pipeline.suffix}.csv", bse_file, Answer(body=day2.getvalue().encode())),
    }
    for slot in (DAY1, DAY2):
        for name, url in urls.items():
            run = pipeline.produce(url, "--source-name", name, "--slot", slot, "--force-publish")
            assert run.summary is not None and run.summary["status"] == "succeeded", run.summary

    # the change topic: each source's own listings, and BSE's five delistings, nothing else
    want = Counter(
        [("LISTED", "nse", isin, DAY1) for isin in nse]
        + [("LISTED", "bse", isin, DAY1) for isin in bse]
        + [("DELISTED", "bse", isin, DAY2) for isin in dropped]
    )

    def got() -> Counter[tuple[str, str, str, str]]:
        return Counter(
            (c["op"], c["source"], c["isin"], c["slot"].strftime("%Y-%m-%dT%H:%M:%SZ")) for c in changes(pipeline)
        )

    wait_for("every source's changes", lambda: got() == want, 90)
    assert len({c["change_id"] for c in changes(pipeline)}) == sum(want.values())

    def history(isin: str, query: str = "") -> list[tuple[str, str, str]] | None:
        status, body = worker.get(f"/isins/{isin}/history{query}")
        return [(c["op"], c["source"], c["slot"][:10]) for c in body["changes"]] if status == 200 else None

    gone = sorted(dropped)[0]
    want_gone = [("LISTED", "nse", DAY1[:10]), ("LISTED", "bse", DAY1[:10]), ("DELISTED", "bse", DAY2[:10])]
    shown = wait_for("the history of an ISIN BSE dropped", lambda: history(gone), 60)
    assert sorted(shown) == sorted(want_gone) and shown[-1] == want_gone[-1]  # ordered by slot
    assert history(gone, "?source=bse") == [c for c in want_gone if c[1] == "bse"]
    assert history(gone, "?source=nse") == [("LISTED", "nse", DAY1[:10])]
    kept = next(isin for isin in both if isin not in dropped)
    assert sorted(history(kept) or []) == sorted(want_gone[:2])

    # as of each day: both listings on day 1, NSE's alone on day 2; the snapshot agrees
    for day, sources in ((DAY1, ["bse", "nse"]), (DAY2, ["nse"])):
        status, record = worker.get(f"/isins/{gone}?as_of={day.replace('07:00:00', '08:00:00')}")
        assert status == 200 and sorted(item["source"] for item in record["listings"]) == sources
        out = pipeline.tmp / f"two-sources-{day[:10]}.jsonl"
        snap = pipeline.cli(
            "snapshot", "--as-of", day.replace("07:00:00", "08:00:00"), "--source", "bse", "--out", str(out)
        )
        assert snap.returncode == 0, snap.stderr
        assert {json.loads(line)["isin"] for line in out.read_text().splitlines()} == (
            bse if day == DAY1 else bse - dropped
        )
    diff = pipeline.cli("changes", "--source", "bse", "--since", DAY2, "--until", DAY3)
    assert diff.returncode == 0, diff.stderr
    assert sorted((c["op"], c["isin"]) for c in map(json.loads, diff.stdout.splitlines())) == sorted(
        ("DELISTED", i) for i in dropped
    )
    assert pipeline.cli("changes", "--source", "nse", "--since", DAY2, "--until", DAY3).stdout.strip() == ""
