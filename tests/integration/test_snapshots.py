"""Daily snapshots: exact adds, changes and deletes, source scoping, and downstream snapshots."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline


def derive_day2(src: Path, dst: Path, drop_every: int, edit_every: int) -> tuple[set[str], set[str]]:
    """Day 2 of a real list: every n-th row removed, every m-th row edited (its Description).

    Returns (removed ISINs, edited ISINs). The output keeps the file's layout (all fields quoted).
    """
    with src.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    isin_col, desc_col = header.index("ISIN"), header.index("Description")
    removed, edited, out = set(), set(), [header]
    for i, row in enumerate(body):
        if i % drop_every == 0:
            removed.add(row[isin_col])
            continue
        if i % edit_every == 0:
            row = [*row]
            row[desc_col] += " (AMENDED)"
            edited.add(row[isin_col])
        out.append(row)
    with dst.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(out)
    return removed, edited


def changes_since(pipeline: Pipeline, start: dict[int, int]) -> Counter[str]:
    """NEW / CHANGED / REMOVED counts of what the current topic received after ``start``."""
    from ops.client import TopicReader

    reader = TopicReader(pipeline.settings(), pipeline.env["TOPIC_CURRENT"])
    counts: Counter[str] = Counter()
    for item in reader.read(start=start):
        counts["REMOVED" if item.record is None else item.record["change"]] += 1
    return counts


def current_ends(pipeline: Pipeline) -> dict[int, int]:
    from ops.client import TopicReader

    return TopicReader(pipeline.settings(), pipeline.env["TOPIC_CURRENT"]).end_offsets()


def test_two_days_of_the_nsdl_list(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    day1 = shared_data / "nsdl_india-isin_ISIN_20240831.csv"
    day2 = tmp_path / "nsdl-day2.csv"
    removed, edited = derive_day2(day1, day2, drop_every=97, edit_every=89)
    assert len(removed) == 160 and len(edited) == 172
    url1, url2 = list_server.url(f"/data/{day1.name}"), list_server.add_file("nsdl-day2.csv", day2)
    name = ["--source-name", "nsdl-isin-master"]
    worker = pipeline.worker().start()
    worker.wait_healthy()

    assert pipeline.produce(url1, *name).returncode == 0
    pipeline.wait_processed(15460, markers=pipeline.partitions)
    mark = current_ends(pipeline)

    assert pipeline.produce(url2, *name).returncode == 0
    stats = pipeline.wait_processed(15460 + 15300, markers=2 * pipeline.partitions)
    assert stats["isins"] == 15460 - 160
    assert changes_since(pipeline, mark) == Counter({"REMOVED": 160, "CHANGED": 172})
    gone = sorted(removed)[0]
    assert worker.get(f"/isins/{gone}")[0] == 404
    status, record = worker.get(f"/isins/{sorted(edited)[0]}")
    assert status == 200 and record["listings"][0]["attributes"]["description"].endswith("(AMENDED)")

    # snapshot after two days equals the day-2 list exactly
    out = tmp_path / "current.jsonl"
    snap = pipeline.cli("snapshot", "--out", str(out))
    assert snap.returncode == 0, snap.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    with day2.open(newline="") as f:
        expected = {row["ISIN"]: row["Description"] for row in csv.DictReader(f)}
    assert [r["isin"] for r in lines] == sorted(expected)
    assert {r["isin"]: r["listings"][0]["attributes"]["description"] for r in lines} == expected

    # day 3 is day 1 again: the removed ISINs come back as NEW, the edits are undone
    mark = current_ends(pipeline)
    assert pipeline.produce(url1, *name).returncode == 0
    stats = pipeline.wait_processed(15460 + 15300 + 15460, markers=3 * pipeline.partitions)
    assert stats["isins"] == 15460
    assert changes_since(pipeline, mark) == Counter({"NEW": 160, "CHANGED": 172})


def test_deletes_are_scoped_to_their_source(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    """NSE and BSE list many of the same ISINs. An ISIN dropped by NSE stays while BSE lists it."""
    nse, bse = shared_data / "nse_EQUITY_L.csv", shared_data / "bse_Equity.csv"
    with nse.open(newline="") as f:
        nse_rows = list(csv.reader(f))
    with bse.open(newline="") as f:
        bse_isins = {row[7].strip() for row in list(csv.reader(f))[1:]}
    both = [r[6] for r in nse_rows[1:] if r[6] in bse_isins]
    nse_only = [r[6] for r in nse_rows[1:] if r[6] not in bse_isins]
    assert len(both) > 1000 and len(nse_only) > 50
    dropped = set(both[:40]) | set(nse_only[:30])
    day2 = tmp_path / "nse-day2.csv"
    with day2.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([row for row in nse_rows if row[6] not in dropped])

    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(list_server.url("/data/nse_EQUITY_L.csv"), "--source-name", "nse").returncode == 0
    assert pipeline.produce(list_server.url("/data/bse_Equity.csv"), "--source-name", "bse").returncode == 0
    union = len(set(r[6] for r in nse_rows[1:]) | (bse_isins - {"-", "NA"}))
    stats = pipeline.wait_processed(2387 + 4924, markers=2 * pipeline.partitions)
    assert stats["isins"] == union

    assert pipeline.produce(list_server.add_file("nse-day2.csv", day2), "--source-name", "nse").returncode == 0
    stats = pipeline.wait_processed(2387 + 4924 + 2387 - 70, markers=3 * pipeline.partitions)
    assert stats["isins"] == union - 30  # only the NSE-only ones are gone
    for isin in both[:40]:
        status, record = worker.get(f"/isins/{isin}")
        assert status == 200 and [item["source"] for item in record["listings"]] == ["bse"]
    for isin in nse_only[:30]:
        assert worker.get(f"/isins/{isin}")[0] == 404


def test_gleif_layout_day_two_matches_the_generator(
    pipeline: Pipeline, list_server: ListServer, gleif_tool: Path, tmp_path: Path
) -> None:
    """The generator's JSON line says how many ISINs changed LEI, were removed and were added."""

    def make(day: int) -> tuple[Path, dict[str, int]]:
        out = tmp_path / f"gleif-day{day}.csv"
        proc = subprocess.run(
            [sys.executable, str(gleif_tool), "--rows", "30000", "--day", str(day), "--out", str(out), "--zip"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return Path(f"{out}.zip"), json.loads(proc.stdout)

    (zip1, facts1), (zip2, facts2) = make(1), make(2)
    assert facts2["changed"] > 0 and facts2["removed"] > 0 and facts2["added"] > 0
    worker = pipeline.worker().start()
    worker.wait_healthy()
    name = ["--source-name", "gleif-isin-lei"]
    assert pipeline.produce(list_server.add_file("g1.zip", zip1), *name).returncode == 0
    pipeline.wait_processed(facts1["rows"], markers=pipeline.partitions)
    mark = current_ends(pipeline)
    assert pipeline.produce(list_server.add_file("g2.zip", zip2), *name).returncode == 0
    stats = pipeline.wait_processed(facts1["rows"] + facts2["rows"], markers=2 * pipeline.partitions)
    assert stats["isins"] == facts2["rows"]
    assert changes_since(pipeline, mark) == Counter(
        {"CHANGED": facts2["changed"], "REMOVED": facts2["removed"], "NEW": facts2["added"]}
    )
