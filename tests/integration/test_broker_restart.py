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
    ours = [pipeline.env[k] for k in ("TOPIC_RAW", "TOPIC_CURRENT", "TOPIC_DLQ", "TOPIC_RUNS")]
    try:
        worker = pipeline.worker().start()
        worker.wait_healthy()
        assert pipeline.produce(list_server.url(NSE)).returncode == 0
        pipeline.wait_processed(2387, markers=pipeline.partitions)
        assert worker.stop() == 0
        broker.stop()

        broker = EmbeddedBroker(port=port, log_path=tmp_path / "broker-2.log").__enter__()
        assert partition_counts(broker.bootstrap, ours) == {}, "the new broker starts empty"

        # a worker never creates a topic: it stops and says what to run
        early = pipeline.worker("w-early")
        early.state_dir = worker.state_dir
        early.start()
        wait_for("the worker to stop", lambda: not early.alive(), 60)
        assert early.proc is not None and early.proc.returncode != 0
        assert "isin-pipeline topics create" in early.tail()
        assert partition_counts(broker.bootstrap, ours) == {}, "nothing was created by accident"

        created = pipeline.cli("topics", "create")
        assert created.returncode == 0, created.stderr
        assert partition_counts(broker.bootstrap, ours) == {
            pipeline.env["TOPIC_RAW"]: 6,
            pipeline.env["TOPIC_CURRENT"]: 6,
            pipeline.env["TOPIC_DLQ"]: 6,
            pipeline.env["TOPIC_RUNS"]: 1,
        }

        # the same worker state, now ahead of the broker: said once, and rebuilt from the broker
        again = pipeline.worker("w-again")
        again.state_dir = worker.state_dir
        again.start()
        again.wait_healthy()
        assert again.log.read_text().count("is ahead of the broker") == 1
        assert again.stats()["isins"] == 0
        assert pipeline.produce(list_server.url(NSE)).returncode == 0
        stats = pipeline.wait_processed(2387, markers=pipeline.partitions)
        assert stats["isins"] == 2387
    finally:
        pipeline.close()
        broker.stop()
