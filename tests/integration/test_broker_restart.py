"""The embedded broker keeps nothing: after it restarts empty, the pipeline recovers without a wipe by hand."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from core.broker import EmbeddedBroker, free_port
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, wait_for

NSE = "/data/nse_EQUITY_L.csv"


def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    topics = AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False}).list_topics(timeout=10)
    return {n: len(topics.topics[n].partitions) for n in names if n in topics.topics}


@pytest.mark.slow
def test_a_restarted_empty_broker_gets_its_topics_back_and_the_worker_rebuilds(
    embedded_broker_only: str, list_server: ListServer, tmp_path: Path
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-1.log").__enter__()
    pipeline = Pipeline(broker.bootstrap, uuid.uuid4().hex[:10], tmp_path)
    ours = [
        pipeline.env[k]
        for k in ("TOPIC_RAW", "TOPIC_CURRENT", "TOPIC_DLQ", "TOPIC_RUNS", "TOPIC_CHANGES", "TOPIC_IDENTIFIERS")
    ]
    try:
        worker = pipeline.worker().start()
        worker.wait_healthy()
        assert pipeline.produce(list_server.url(NSE)).returncode == 0
        pipeline.wait_processed(2387, markers=pipeline.partitions)
        assert worker.stop() == 0
        broker.stop()

        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-2.log").__enter__()
        assert partition_counts(broker.bootstrap, ours) == {}, "the new broker starts empty"

        # a worker never creates a topic: it waits, alive but not ready, and says what to run
        early = pipeline.worker("w-early")
        early.state_dir = worker.state_dir
        early.start()
        wait_for("the worker to say what to run", lambda: "isin-pipeline topics create" in early.tail(), 60)
        assert early.alive()
        assert early.get("/livez")[0] == 200
        assert early.get("/healthz")[0] == 503
        assert partition_counts(broker.bootstrap, ours) == {}, "nothing was created by accident"

        created = pipeline.cli("topics", "create")
        assert created.returncode == 0, created.stderr
        assert partition_counts(broker.bootstrap, ours) == {
            pipeline.env["TOPIC_RAW"]: 6,
            pipeline.env["TOPIC_CURRENT"]: 6,
            pipeline.env["TOPIC_DLQ"]: 6,
            pipeline.env["TOPIC_RUNS"]: 1,
            pipeline.env["TOPIC_CHANGES"]: 6,
            pipeline.env["TOPIC_IDENTIFIERS"]: 6,
        }

        # the same process goes on: its state is ahead of the broker, said once, and rebuilt
        early.wait_healthy()
        assert early.log.read_text().count("is ahead of the broker") == 1
        assert early.stats()["isins"] == 0
        assert pipeline.produce(list_server.url(NSE)).returncode == 0
        stats = pipeline.wait_processed(2387, markers=pipeline.partitions)
        assert stats["isins"] == 2387
    finally:
        pipeline.close()
        broker.stop()


@pytest.mark.slow
def test_a_running_worker_survives_the_broker_losing_its_data(
    embedded_broker_only: str, list_server: ListServer, tmp_path: Path
) -> None:
    """The broker restarts empty under a running worker: the worker says so once, waits for its
    topics (alive, not ready), rebuilds, and serves the next run's list, with the same pid and
    no deletion published because of the loss."""
    port = free_port()
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-1.log").__enter__()
    pipeline = Pipeline(broker.bootstrap, uuid.uuid4().hex[:10], tmp_path)
    pipeline.extra_env["LOSS_CHECK_S"] = "1"
    try:
        worker = pipeline.worker().start()
        worker.wait_healthy()
        pid = worker.pid
        assert pipeline.produce(list_server.url(NSE)).returncode == 0
        pipeline.wait_processed(2387, markers=pipeline.partitions)

        broker.stop()
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-2.log").__enter__()
        wait_for("the worker to say what to run", lambda: "isin-pipeline topics create" in worker.tail(), 60)
        assert worker.alive() and worker.pid == pid
        assert worker.get("/healthz")[0] == 503 and worker.get("/livez")[0] == 200
        assert worker.log.read_text().count("the broker lost this worker's data") == 1
        assert "ConsistencyError" not in worker.log.read_text()

        assert pipeline.cli("topics", "create").returncode == 0
        worker.wait_healthy()
        assert worker.stats()["isins"] == 0
        bse = list_server.url("/data/bse_Equity.csv")
        assert pipeline.produce(bse).returncode == 0
        stats = pipeline.wait_processed(4924, markers=pipeline.partitions)
        assert stats["isins"] == 4924
        assert worker.alive() and worker.pid == pid
        status, body = worker.get("/isins/INE117A01022")
        assert status == 200 and body["isin"] == "INE117A01022"
        # the rebuilt table came from the broker: no tombstone was written for the lost ISINs
        tombstones = [i for i in pipeline.items(pipeline.env["TOPIC_CURRENT"]) if i.key and i.record is None]
        assert tombstones == []
        assert worker.log.read_text().count("the broker lost this worker's data") == 1
    finally:
        pipeline.close()
        broker.stop()
