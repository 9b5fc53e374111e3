"""Two stream workers share the table: queries answer on either, and after one dies."""

from __future__ import annotations

import csv
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stdnum.isin import calc_check_digit as isin_check_digit

from core.kafka import partition_for
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, Worker, wait_for

NSDL = "nsdl_india-isin_ISIN_20240831.csv"


def sample_keys(shared_data: Path, partitions: int, per_partition: int = 4) -> list[str]:
    """A few ISINs of the list from every partition."""
    with (shared_data / NSDL).open(newline="") as f:
        isins = [row["ISIN"] for row in csv.DictReader(f)]
    keys: list[str] = []
    for p in range(partitions):
        keys += [i for i in isins if partition_for(i.encode(), partitions) == p][:per_partition]
    return keys


def all_answer(worker: Worker, keys: list[str]) -> bool:
    return all(worker.get(f"/isins/{k}")[0] == 200 for k in keys)


def shares(w1: Worker, w2: Worker, partitions: int) -> list[frozenset[int]] | None:
    """Each worker's partitions, once the two share all of them; else None."""
    sets = [frozenset(w.get("/healthz")[1].get("partitions", [])) for w in (w1, w2)]
    whole = sets[0] | sets[1] == frozenset(range(partitions))
    return sets if sets[0] and sets[1] and not sets[0] & sets[1] and whole else None


def test_two_workers_answer_every_key_and_survive_a_kill(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    w1, w2 = pipeline.worker("w1").start(), pipeline.worker("w2").start()
    w1.wait_healthy()
    w2.wait_healthy()
    assert pipeline.produce(list_server.url(f"/data/{NSDL}")).returncode == 0
    pipeline.wait_processed(15460, markers=pipeline.partitions)

    def split() -> bool:
        owned = [set(w.get("/healthz")[1].get("partitions", [])) for w in (w1, w2)]
        return bool(owned[0] and owned[1] and not owned[0] & owned[1])

    wait_for("both workers to own partitions", split, timeout=60)
    keys = sample_keys(shared_data, pipeline.partitions)
    for worker in (w1, w2):
        bodies = [worker.get(f"/isins/{k}") for k in keys]
        assert [status for status, _ in bodies] == [200] * len(keys)
        assert [body["isin"] for _, body in bodies] == keys
        assert worker.stats()["isins"] == 15460

    # paging in key order across both workers' partitions
    with (shared_data / NSDL).open(newline="") as f:
        expected = sorted(row["ISIN"] for row in csv.DictReader(f) if row["ISIN"].startswith("INE00"))
    got: list[str] = []
    path = "/isins?prefix=INE00&limit=200"
    for _ in range(100):
        status, page = w2.get(path)
        assert status == 200
        got += [item["isin"] for item in page["items"]]
        if "next" not in page:
            break
        path = page["next"]
    assert got == expected

    w1.kill()
    started = time.monotonic()

    def survivor_owns_all() -> bool:
        status, body = w2.get("/healthz")
        return status == 200 and sorted(body["partitions"]) == list(range(pipeline.partitions))

    wait_for("the survivor to own every partition", survivor_owns_all, timeout=90, interval=0.5)
    took = time.monotonic() - started
    print(f"\nafter SIGKILL of one worker, the other owned every partition in {took:.1f}s")
    wait_for("every key to answer on the survivor", lambda: all_answer(w2, keys), timeout=30, interval=0.5)
    assert w2.stats()["isins"] == 15460


def test_restarted_workers_get_back_the_partitions_whose_state_they_keep(
    pipeline: Pipeline, list_server: ListServer
) -> None:
    """A rolling restart must not deal the partitions afresh: a worker given another's partitions
    restores them from the changelog before it serves, for nothing."""
    w1, w2 = pipeline.worker("w1").start(), pipeline.worker("w2").start()
    w1.wait_healthy()
    w2.wait_healthy()
    assert pipeline.produce(list_server.url(f"/data/{NSDL}")).returncode == 0
    pipeline.wait_processed(15460, markers=pipeline.partitions)

    def owned() -> list[frozenset[int]] | None:
        return shares(w1, w2, pipeline.partitions)

    before = wait_for("both workers to share the partitions", owned, timeout=60)
    # one at a time, as a rolling restart does: w2 holds everything while w1 is away
    for worker in (w1, w2):
        worker.stop()
        worker.start()
        worker.wait_healthy()
    after = wait_for("both workers to share the partitions again", owned, timeout=90)
    assert after == before
    assert w1.stats()["isins"] == 15460


def served_by(worker: Worker, isin: str, tail: str = "") -> tuple[int, str | None, Any]:
    """Status, X-Isin-Pipeline-Served-By and body of GET /isins/{isin}{tail}."""
    try:
        with urllib.request.urlopen(f"{worker.api}/isins/{isin}{tail}", timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, resp.headers.get("X-Isin-Pipeline-Served-By"), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Isin-Pipeline-Served-By"), None


def test_a_caught_up_standby_answers_and_a_worker_told_not_to_forwards(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    w1 = pipeline.worker("w1").start()
    w2 = Worker("w2", {**pipeline.env, "QUERY_STANDBYS": "false"}, pipeline.tmp / "state-w2", pipeline.tmp / "w2.log")
    pipeline.workers.append(w2.start())
    w1.wait_healthy()
    w2.wait_healthy()
    assert pipeline.produce(list_server.url(f"/data/{NSDL}")).returncode == 0
    pipeline.wait_processed(15460, markers=pipeline.partitions)

    mine, theirs = wait_for("both workers to share the partitions", lambda: shares(w1, w2, pipeline.partitions), 60)
    keys = sample_keys(shared_data, pipeline.partitions)
    of_w2 = [k for k in keys if partition_for(k.encode(), pipeline.partitions) in theirs]
    of_w1 = [k for k in keys if partition_for(k.encode(), pipeline.partitions) in mine]
    assert of_w1 and of_w2
    truth = {k: w2.get(f"/isins/{k}")[1] for k in of_w2} | {k: w1.get(f"/isins/{k}")[1] for k in of_w1}

    # w1 keeps a standby copy of w2's partitions: once it has caught up, it answers them itself
    def from_standby() -> bool:
        return all(served_by(w1, k)[:2] == (200, "standby") for k in of_w2)

    wait_for("w1's standby copies to answer", from_standby, timeout=60)
    assert {k: served_by(w1, k)[2] for k in of_w2} == {k: truth[k] for k in of_w2}
    assert {k: served_by(w1, k)[:2] for k in of_w1} == {k: (200, "owner") for k in of_w1}

    # and their history, from w1's standby history of w2's partitions: the same as the owner's;
    # the owner answers 503 until its own history feed has caught up with the change topic
    def owners_answer() -> bool:
        return all(w2.get(f"/isins/{k}/history")[0] == 200 for k in of_w2)

    wait_for("w2's history to answer", owners_answer, timeout=60)
    owners_history = {k: w2.get(f"/isins/{k}/history")[1] for k in of_w2}
    assert all(len(h["changes"]) == 1 and h["changes"][0]["op"] == "LISTED" for h in owners_history.values())

    def history_from_standby() -> bool:
        return all(served_by(w1, k, "/history") == (200, "standby", owners_history[k]) for k in of_w2)

    wait_for("w1's standby history to answer", history_from_standby, timeout=60)
    # a miss is the owner's to say: an ISIN the list does not hold, of w2's partitions, asked on w1
    absent = next(
        i
        for i in (f"XS{n:09d}" + isin_check_digit(f"XS{n:09d}") for n in range(1000))
        if partition_for(i.encode(), pipeline.partitions) in theirs
    )
    assert served_by(w1, absent)[:2] == (404, "forwarded")
    assert w2.get(f"/isins/{absent}")[0] == 404
    # w2 is told not to: it forwards to the owner, and the answer is the owner's
    assert {k: served_by(w2, k) for k in of_w1} == {k: (200, "forwarded", truth[k]) for k in of_w1}
    assert all(served_by(w2, k, "/history")[:2] == (200, "forwarded") for k in of_w1)
