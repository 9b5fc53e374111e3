"""A run commits in chunks: the workers apply each chunk while the run goes on, and a run that
dies after some chunks has deleted nothing; the next run of its slot completes the list."""

from __future__ import annotations

from pathlib import Path

from tests.integration.httpd import Answer, ListServer
from tests.integration.support import Pipeline, wait_for
from tests.integration.test_changes import day2_of
from tests.integration.test_dead_runs import FAST_BEATS, NSE, nse_isins

DAY1, DAY2 = "2026-12-01T07:00:00Z", "2026-12-02T07:00:00Z"


def test_chunks_reach_the_table_as_the_run_goes_and_a_dead_run_deletes_nothing(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path
) -> None:
    pipeline.extra_env.update({**FAST_BEATS, "RUN_CHUNK_ROWS": "500"})
    worker = pipeline.worker().start()
    worker.wait_healthy()
    day1 = nse_isins(shared_data)
    body2, dropped, renamed = day2_of(shared_data)
    path = f"/chunks-{pipeline.suffix}.csv"
    url = list_server.script(path, Answer(file=shared_data / NSE), Answer(body=body2), Answer(body=body2))

    first = pipeline.produce(url, "--slot", DAY1)
    assert first.summary is not None and first.summary["status"] == "succeeded", first.summary
    assert first.summary["transactions"] >= 2  # 2,387 rows in batches of 2,000, a chunk from 500
    assert 0 < first.summary["longest_transaction_s"] <= first.summary["duration_s"]
    pipeline.wait_processed(len(day1), markers=pipeline.partitions)
    assert set(pipeline.current()) == day1

    # day 2's run stops after its first chunk is committed: the worker applies that chunk (the
    # renamed company is in it) while the run is still open, and it deletes nothing
    env = {**pipeline.env, "ISIN_PIPELINE_FAILPOINTS": "run.chunk_committed"}
    victim = pipeline.spawn("victim", "produce", "--source", url, "--slot", DAY2, env=env).start()
    wait_for("the first chunk committed", lambda: "failpoint run.chunk_committed reached" in victim.tail(), 60)

    def renamed_in_table() -> bool:
        status, record = worker.get(f"/isins/{renamed}")
        return status == 200 and record["listings"][0]["attributes"]["name_of_company"].endswith("(renamed)")

    assert wait_for("the chunk applied while the run is open", renamed_in_table, 60)
    victim.kill()
    assert dropped <= set(pipeline.current()), "a run without markers deleted a listing"

    retry = pipeline.produce(url, "--slot", DAY2)
    assert retry.summary is not None and retry.summary["status"] == "succeeded", retry.summary
    assert wait_for("day 2 exactly", lambda: set(pipeline.current()) == day1 - dropped, 90)
