"""Two stream workers share the table: queries answer on either, and after one dies."""

from __future__ import annotations

import csv
import time
from pathlib import Path

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
    wait_for("every key to answer on the survivor", lambda: all_answer(w2, keys), timeout=90, interval=0.5)
    took = time.monotonic() - started
    print(f"\nafter SIGKILL of one worker, all keys answered again on the other in {took:.1f}s")
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
        sets = [frozenset(w.get("/healthz")[1].get("partitions", [])) for w in (w1, w2)]
        whole = sets[0] | sets[1] == frozenset(range(pipeline.partitions))
        return sets if sets[0] and sets[1] and not sets[0] & sets[1] and whole else None

    before = wait_for("both workers to share the partitions", owned, timeout=60)
    # one at a time, as a rolling restart does: w2 holds everything while w1 is away
    for worker in (w1, w2):
        worker.stop()
        worker.start()
        worker.wait_healthy()
    after = wait_for("both workers to share the partitions again", owned, timeout=90)
    assert after == before
    assert w1.stats()["isins"] == 15460
