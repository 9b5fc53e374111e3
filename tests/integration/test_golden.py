"""The golden record on real lists: precedence, conflicts, derived identifiers and lookups by
identifier, through a real broker and workers given a sources file."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from lxml import etree

from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, wait_for

NSE, BSE = "nse_EQUITY_L.csv", "bse_Equity.csv"
GLEIF = "formats/gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json"
NPORT = "formats/sec_nport-p_dupree_20221231.xml"
LEI = "851WYGNLUQLFZBSYGB56"


def name_key(value: str) -> str:
    """The test's own comparison of names: case, punctuation and spacing ignored."""
    return " ".join(re.sub(r"[^\w\s]", "", value.casefold()).split())


def columns(path: Path, isin_col: str) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in csv.DictReader(f)]
    return {r[isin_col]: r for r in rows}


def sources_file(pipeline: Pipeline, body: str) -> Path:
    path = pipeline.tmp / "sources.toml"
    path.write_text(body, encoding="utf-8")
    pipeline.extra_env["SOURCES_FILE"] = str(path)
    return path


SOURCES = """
[sources.bse]
url = "https://example.org/bse.csv"
every = "24h"

[sources.nse]
url = "https://example.org/nse.csv"
every = "24h"

[precedence]
name = ["nse", "*"]
"""


def test_two_exchanges_give_golden_values_by_precedence_and_their_conflicts(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    sources_file(pipeline, SOURCES)
    pipeline.extra_env["CONFLICT_SCAN_S"] = "1"
    worker = pipeline.worker().start()
    worker.wait_healthy()
    for name, path in (("nse", NSE), ("bse", BSE)):
        run = pipeline.produce(list_server.url(f"/data/{path}"), "--source-name", name)
        assert run.summary is not None and run.summary["status"] == "succeeded", run.summary
    nse = columns(shared_data / NSE, "ISIN NUMBER")
    bse = columns(shared_data / BSE, "ISIN No")
    both = sorted(set(nse) & set(bse))
    assert len(both) > 2000
    current = wait_for("both lists in the table", lambda: (c := pipeline.current()) and len(c) >= 5000 and c, 120)

    # the expectation, from the raw columns: names by [precedence] (NSE first), the rest in file
    # order (BSE first); a conflict where the two differ after the test's own normalisation
    want_conflicts: dict[str, set[str]] = {}
    for isin in both:
        n, b = nse[isin], bse[isin]
        record = current[isin]
        golden = {f: v["value"] for f, v in record["golden"].items()}
        assert golden["name"] == " ".join(n["NAME OF COMPANY"].split()), json.dumps(record, default=str)
        assert record["golden"]["name"]["source"] == "nse"
        assert golden["ticker"] == b["Security Id"] and record["golden"]["ticker"]["source"] == "bse"
        assert golden["issuer_name"] == " ".join(b["Issuer Name"].split())
        fields = set()
        if name_key(n["NAME OF COMPANY"]) != name_key(b["Security Name"]):
            fields.add("name")
        if n["SYMBOL"].casefold() != b["Security Id"].casefold():
            fields.add("ticker")
        want_conflicts[isin] = fields
        assert {c["field"] for c in record["conflicts"]} == fields, isin
        for conflict in record["conflicts"]:
            assert set(conflict["values"]) == {"nse", "bse"}
    only_nse = next(i for i in nse if i not in bse)
    assert current[only_nse]["conflicts"] == [] and current[only_nse]["golden"]["name"]["source"] == "nse"
    assert current[only_nse]["identifiers"] == {}  # Indian ISINs carry no CUSIP or SEDOL

    # the report: every record with a name conflict, paged, and the counts by source pair
    expected_names = sorted(i for i, f in want_conflicts.items() if "name" in f)
    assert expected_names, "the two exchanges never disagree on a name?"
    got: list[str] = []
    url = "/conflicts?field=name&limit=500"
    for _ in range(20):
        status, page = worker.get(url)
        assert status == 200, page
        got += [item["isin"] for item in page["items"]]
        if "next" not in page:
            break
        url = page["next"]
    assert got == expected_names
    counts = wait_for(
        "the conflict counts",
        lambda: (c := worker.stats().get("conflicts")) and c.get("name:bse|nse") == len(expected_names) and c,
        90,
    )
    assert counts.get("ticker:bse|nse", 0) == sum(1 for f in want_conflicts.values() if "ticker" in f)
    metrics = worker_metrics(worker)
    assert f'isin_stream_conflicts{{field="name",other_source="nse",source="bse"}} {len(expected_names)}.0' in metrics

    cli = pipeline.cli("conflicts", "--field", "name", "--format", "json")
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["isin"] for line in cli.stdout.splitlines()] == expected_names


def worker_metrics(worker: Any) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{worker.api}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        return str(resp.read().decode())


def gleif_without(shared_data: Path, dropped: set[str]) -> bytes:
    doc = json.loads((shared_data / GLEIF).read_text(encoding="utf-8"))
    doc["data"] = [d for d in doc["data"] if d["attributes"]["isin"] not in dropped]
    return json.dumps(doc).encode()


def test_a_lookup_by_lei_finds_every_isin_until_the_last_source_that_gave_it_drops_it(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    w1, w2 = pipeline.worker("w1").start(), pipeline.worker("w2").start()
    w1.wait_healthy()
    w2.wait_healthy()
    isins = sorted({d["attributes"]["isin"] for d in json.loads((shared_data / GLEIF).read_text())["data"]})
    gone = isins[0]
    path = f"/gleif-{pipeline.suffix}.json"
    copy = f"/gleif-copy-{pipeline.suffix}.json"
    full = Answer(file=shared_data / GLEIF)
    list_server.script(path, full, Answer(body=gleif_without(shared_data, {gone})))
    list_server.script(copy, full, Answer(body=gleif_without(shared_data, {gone})))

    def produce(url: str, name: str, slot: str) -> None:
        run = pipeline.produce(url, "--source-name", name, "--slot", slot, "--allow-shrink")
        assert run.summary is not None and run.summary["status"] == "succeeded", run.summary

    def lookup(worker: Any) -> dict[str, list[str]] | None:
        status, body = worker.get(f"/lookup?lei={LEI.lower()}")  # cleaned: upper-cased
        if status != 200:
            return None
        return {item["isin"]: item["identifiers"]["lei"]["sources"] for item in body["items"]}

    produce(list_server.url(path), "gleif", "2026-12-01T07:00:00Z")
    produce(list_server.url(copy), "gleif-copy", "2026-12-01T07:00:00Z")
    both = {isin: ["gleif", "gleif-copy"] for isin in isins}
    # any worker answers: the one that owns the identifier's partition, or one that forwards to it
    assert wait_for("every ISIN of the LEI", lambda: lookup(w1) == both, 90)
    assert wait_for("the same on the other worker", lambda: lookup(w2) == both, 30)
    status, body = w1.get(f"/lookup?lei={LEI}&limit=5")
    assert status == 200 and [i["isin"] for i in body["items"]] == isins[:5] and "next" in body
    assert all(item["golden"]["lei"] == {"value": LEI, "source": "gleif"} for item in body["items"])

    # one source stops giving it: still found, from the other
    produce(list_server.url(path), "gleif", "2026-12-02T07:00:00Z")
    assert wait_for("gleif's listing of it gone", lambda: (lookup(w1) or {}).get(gone) == ["gleif-copy"], 90)
    # the last source drops it: the ISIN leaves the table, and the index with it
    produce(list_server.url(copy), "gleif-copy", "2026-12-02T07:00:00Z")
    rest = {isin: ["gleif", "gleif-copy"] for isin in isins[1:]}
    assert wait_for("the ISIN gone from the index", lambda: lookup(w1) == rest, 90)
    # a standby's copy of the index is a fetch behind the topic: the other worker agrees soon
    assert wait_for("the same on the other worker", lambda: lookup(w2) == rest, 30)
    cli = pipeline.cli("lookup", "--lei", LEI, "--format", "json")
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["isin"] for line in cli.stdout.splitlines()] == isins[1:]
    assert w1.get("/lookup?lei=NOTANLEI")[0] == 400
    assert w1.get(f"/lookup?lei={LEI}&cusip=037833100")[0] == 400


def nport_holdings(shared_data: Path) -> dict[str, str]:
    """ISIN -> the holding's own CUSIP, read from the N-PORT XML with lxml (not the pipeline's reader)."""
    root = etree.fromstring((shared_data / NPORT).read_bytes().lstrip())
    ns = {"n": "http://www.sec.gov/edgar/nport"}
    out = {}
    for sec in root.iterfind(".//n:invstOrSec", ns):
        isin = sec.find("n:identifiers/n:isin", ns)
        cusip = sec.findtext("n:cusip", namespaces=ns)
        if isin is not None and cusip:
            out[isin.get("value")] = cusip
    return out


def test_derived_cusips_equal_the_filings_own_and_find_their_isin(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    holdings = nport_holdings(shared_data)
    assert len(holdings) > 20
    url = list_server.script(f"/nport-{pipeline.suffix}.xml", Answer(file=shared_data / NPORT))
    run = pipeline.produce(url, "--source-name", "nport")
    assert run.summary is not None and run.summary["status"] == "succeeded", run.summary
    current = wait_for("the holdings", lambda: (c := pipeline.current()) and len(c) >= len(holdings) and c, 90)
    for isin, cusip in holdings.items():
        identifiers = current[isin]["identifiers"]
        assert identifiers["cusip"] == {"value": cusip, "sources": ["derived", "nport"]}, isin
        assert not any(c["field"] == "cusip" for c in current[isin]["conflicts"])
    sample = sorted(holdings)[:: max(1, len(holdings) // 5)]
    for isin in sample:
        status, body = worker.get(f"/lookup?cusip={holdings[isin]}")
        assert status == 200 and [i["isin"] for i in body["items"]] == [isin], body
