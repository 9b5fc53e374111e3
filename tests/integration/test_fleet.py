"""The scheduler fleet on a real broker: many sources spread over replicas that come and go,
and a sources file that changes under a running scheduler."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from core.broker import free_port
from scheduler.membership import source_partition
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, Proc, wait_for

DONE = ("SUCCEEDED", "UNCHANGED", "SUSPICIOUS")

# Six real lists, served unchanged; the names fall on six different partitions of six, so that
# three replicas get two sources each.
LISTS = {
    "nse": "nse_EQUITY_L.csv",
    "bse": "bse_Equity.csv",
    "xetra": "xetra_t7-xetr-allTradableInstruments_20190418.csv",
    "nsdl": "nsdl_india-isin_ISIN_20240831.csv",
    "sec-nport": "formats/sec_nport-p_dupree_20221231.xml",
    "gleif-lei": "formats/gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json",
}
FORCE = {"sec-nport", "gleif-lei"}  # these two publish at every slot; the others are unchanged after their first


def url_of(list_server: ListServer, shared_data: Path, name: str) -> str:
    path = shared_data / LISTS[name]
    return list_server.add_file(path.name, path)


def table(list_server: ListServer, shared_data: Path, name: str, every: str, **extra: str) -> str:
    lines = [f"[sources.{name}]", f'url = "{url_of(list_server, shared_data, name)}"', f'every = "{every}"']
    if name in FORCE:
        lines.append("force_publish = true")
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def pid(run: dict[str, Any]) -> int:
    return int(str(run["owner"]).rsplit(":", 1)[1])


def started(run: dict[str, Any]) -> float:
    return float(run["started_at"].timestamp())


def finals(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [r for r in pipeline.runs() if r["status"] != "RUNNING"]


def assert_never_twice(pipeline: Pipeline) -> list[dict[str, Any]]:
    done = [r for r in finals(pipeline) if r["status"] in DONE]
    per_slot = Counter((r["source"], r["slot"]) for r in done)
    twice = {k: n for k, n in per_slot.items() if n > 1}
    assert not twice, f"slots done more than once: {twice}"
    return done


@pytest.mark.slow
def test_three_replicas_share_six_sources_and_take_over_a_killed_ones(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    assert sorted(source_partition(n, 6) for n in LISTS) == list(range(6))
    pipeline.extra_env["SCHEDULER_PARTITIONS"] = "6"
    sources = tmp_path / "sources.toml"
    sources.write_text("".join(table(list_server, shared_data, name, "6s") for name in LISTS))
    procs = {name: pipeline.spawn(name, "schedule", "--sources", str(sources)).start() for name in "abc"}
    replica = {p.pid: name for name, p in procs.items()}

    def settled() -> dict[str, int] | None:
        """Each source's owner, once every source ran twice in a row on one replica and all three run some."""
        claims: dict[str, list[int]] = defaultdict(list)
        for run in pipeline.runs():
            if run["status"] == "RUNNING":
                claims[run["source"]].append(pid(run))
        owner = {s: c[-1] for s, c in claims.items() if len(c) >= 2 and c[-1] == c[-2]}
        if set(owner) == set(LISTS) and set(owner.values()) == set(replica):
            return owner
        return None

    owner = wait_for("the sources to settle over three replicas", settled, 75, interval=0.5)
    ran_before = {pid(r) for r in pipeline.runs()}
    victim = procs["a"]
    moved = {s for s, p in owner.items() if p == victim.pid}
    victim.kill()
    killed_at = time.time()

    def taken_over() -> dict[str, float] | None:
        first: dict[str, float] = {}
        for run in pipeline.runs():
            if run["source"] in moved and pid(run) != victim.pid and started(run) > killed_at:
                first.setdefault(run["source"], started(run))
        return first if set(first) == moved else None

    first = wait_for("the killed replica's sources to run elsewhere", taken_over, 45, interval=0.2)
    took = {s: round(t - killed_at, 1) for s, t in sorted(first.items())}
    print(f"\nmoved: the killed replica's sources {took} ran on another replica that many seconds after the SIGKILL")

    moved_by = max(first.values())

    def all_running_again() -> set[str] | None:
        again = {r["source"] for r in finals(pipeline) if r["status"] in DONE and started(r) > moved_by}
        return again if again == set(LISTS) else None

    wait_for("every source to complete a slot after the move", all_running_again, 45, interval=0.5)
    after = {r["source"]: pid(r) for r in pipeline.runs() if started(r) > killed_at}  # each one's owner now
    survivors = [p for p in procs.values() if p is not victim]
    assert [p.stop() for p in survivors] == [0, 0]

    done = assert_never_twice(pipeline)
    assert ran_before == set(replica), "not every replica ran sources before the kill"
    assert set(after) == set(LISTS)
    assert victim.pid not in after.values()
    assert {after[s] for s in moved} <= {p.pid for p in survivors}
    stayed = set(LISTS) - moved
    assert {s: after[s] for s in stayed} == {s: owner[s] for s in stayed}, "cooperative-sticky: only what must move"
    assert {r["source"] for r in done} == set(LISTS)
    # a run the victim left behind was fenced by the replica that gained its source, never completed
    runs = pipeline.runs()
    finished = {r["run_id"] for r in runs if r["status"] != "RUNNING"}
    for run in runs:
        if run["status"] == "RUNNING" and pid(run) == victim.pid and run["run_id"] not in finished:
            pytest.fail(f"run {run['run_id']} of {run['source']} was left RUNNING: never fenced")


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def log_has(proc: Proc, text: str) -> bool:
    return text in proc.log.read_text(errors="replace")


def test_a_changed_sources_file_is_reloaded_and_an_invalid_one_refused(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    pipeline.extra_env["SCHEDULER_RELOAD_POLL_S"] = "0.5"
    sources = tmp_path / "sources.toml"
    sources.write_text(table(list_server, shared_data, "nse", "3s") + table(list_server, shared_data, "bse", "3s"))
    port = free_port()
    sched = pipeline.spawn("s", "schedule", "--sources", str(sources), "--metrics-port", str(port)).start()

    def done_since(when: float) -> set[str]:
        return {r["source"] for r in finals(pipeline) if r["status"] in DONE and started(r) > when}

    wait_for("both sources to run", lambda: done_since(0) == {"nse", "bse"}, 60, interval=0.5)

    # add one, remove one
    sources.write_text(
        table(list_server, shared_data, "nse", "3s") + table(list_server, shared_data, "gleif-lei", "3s")
    )
    wait_for("the reload", lambda: log_has(sched, "reloaded: 1 added, 1 removed, 0 changed"), 20)
    assert log_has(sched, "sources file: added gleif-lei") and log_has(sched, "sources file: removed bse")
    reloaded = time.time()
    wait_for("the added source to run", lambda: "gleif-lei" in done_since(reloaded), 30, interval=0.5)
    in_flight = 5.0  # a run of bse that started just before the reload may finish
    assert not [r for r in pipeline.runs() if r["source"] == "bse" and started(r) > reloaded + in_flight]
    text = metrics(port)
    for series in (
        'isin_pipeline_source_interval_seconds{source="gleif-lei"} 3.0',
        'isin_pipeline_run_last_status{source="nse",status="succeeded"}',
        'isin_pipeline_run_valid_rows{source="nse"} 2387.0',
        'isin_pipeline_scheduler_runs_source{source="bse"} 0.0',  # removed: no longer run here
        "isin_pipeline_sources_file_valid 1.0",
    ):
        assert series in text, series
    assert 'isin_pipeline_source_next_slot_timestamp_seconds{source="bse"}' not in text  # its gauges went with it

    # invalid: refused with its errors, the last good file stays in force
    sources.write_text(table(list_server, shared_data, "nse", "3s", tz='"Mars/Olympus"') + "[sources.x]\n")
    wait_for("the refusal", lambda: log_has(sched, "the last good one stays in force"), 20)
    refused = time.time()
    text = sched.log.read_text(errors="replace")
    assert "sources.nse.tz: unknown time zone 'Mars/Olympus'" in text and "sources.x.url: missing" in text
    wait_for("both good sources to run again", lambda: done_since(refused) == {"nse", "gleif-lei"}, 30, interval=0.5)
    assert "isin_pipeline_sources_file_valid 0.0" in metrics(port)
    assert sched.alive()
    assert sched.stop() == 0
    assert_never_twice(pipeline)
    assert text.count("the last good one stays in force") == 1  # refused once, not at every poll


def test_one_run_of_a_configured_source_and_the_state_of_every_source(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    """``produce --sources FILE --only NAME`` (a CronJob per source), then ``runs`` per source."""
    sources = tmp_path / "sources.toml"
    sources.write_text(
        table(list_server, shared_data, "nse", "1h", format='"csv"', column='"ISIN NUMBER"')
        + table(list_server, shared_data, "bse", "1h", enabled="false")
        + table(list_server, shared_data, "gleif-lei", "24h")
    )
    first = pipeline.cli("produce", "--sources", str(sources), "--only", "nse")
    assert first.returncode == 0, first.stderr
    assert first.summary and first.summary["status"] == "succeeded" and first.summary["published"] == 2387
    assert first.summary["layout"]["column_by"] == "configured"  # the file's reader hints were used
    again = pipeline.cli("produce", "--sources", str(sources), "--only", "nse")  # a CronJob's second start
    assert again.returncode == 0 and again.summary and again.summary["status"] == "skipped"
    assert again.summary["slot"] == first.summary["slot"]
    disabled = pipeline.cli("produce", "--sources", str(sources), "--only", "bse")
    assert disabled.returncode == 2 and "disabled" in disabled.last_error_line
    assert disabled.summary and disabled.summary["status"] == "failed"  # still one JSON summary
    flags = pipeline.cli("produce", "--sources", str(sources), "--only", "nse", "--format", "xml")
    assert flags.returncode == 2 and "--format: with --sources, set this in the sources file" in flags.stderr

    asked = time.time()
    states = pipeline.cli("runs", "--sources", str(sources), "--format", "json")
    answered = time.time()
    assert states.returncode == 0, states.stderr
    by_source = {s["source"]: s for s in map(json.loads, states.stdout.splitlines())}
    assert set(by_source) == {"nse", "gleif-lei"}  # bse is disabled and never ran
    nse, gleif = by_source["nse"], by_source["gleif-lei"]
    assert (nse["status"], nse["valid"], nse["slot"]) == ("SUCCEEDED", 2387, first.summary["slot"])
    # the age is the CLI's clock at the call minus the run's finish: between the two readings
    success = next(r for r in pipeline.runs() if r["run_id"] == first.summary["run_id"] and r["status"] == "SUCCEEDED")
    finished = success["finished_at"].timestamp()
    assert asked - finished - 0.1 <= nse["last_success_age_s"] <= answered - finished + 0.1
    assert nse["next_slot"] > nse["slot"]
    assert gleif["status"] is None and gleif["last_success_at"] is None and gleif["next_slot"].endswith("T00:00:00Z")
    table_text = pipeline.cli("runs", "--sources", str(sources))
    assert table_text.returncode == 0 and "never" in table_text.stdout and "SUCCEEDED" in table_text.stdout
