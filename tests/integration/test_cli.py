"""The README's contract: ``isin-pipeline broker`` and ``isin-pipeline demo`` as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from confluent_kafka import Producer

from core.broker import free_port, wait_until_ready
from core.kafka.offsets import end_offsets, list_end_offsets
from core.kafka.topics import TopicSpec, ensure_topics
from tests.integration.support import Pipeline, wait_for


def test_broker_command_serves_kafka_until_sigterm() -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "isin_pipeline", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            first = proc.stdout.readline() if proc.stdout else ""
            assert f"127.0.0.1:{port}" in first
            wait_until_ready(f"127.0.0.1:{port}", 15)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
    assert code == 0


def test_demo_runs_the_whole_pipeline_and_exits_0() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "isin_pipeline", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "15460 ISINs in the table" in proc.stdout
    assert "INE001A01036" in proc.stdout  # a record queried over HTTP
    assert '"published": 15460' in proc.stdout


def test_end_offsets_are_right_although_the_embedded_broker_reports_them_wrong(
    embedded_broker_only: str, pipeline: Pipeline
) -> None:
    """tansu answers ListOffsets(latest) with the base offset of the last batch + 1."""
    topic = f"offsets-{pipeline.suffix}"
    ensure_topics(pipeline.settings(), [TopicSpec(topic, 1, {"cleanup.policy": "delete", "retention.ms": "-1"})])
    producer = Producer({"bootstrap.servers": embedded_broker_only, "linger.ms": 50})
    for i in range(10):
        producer.produce(topic, b"v", f"k{i}".encode(), partition=0)
    assert producer.flush(10) == 0
    conf = {"bootstrap.servers": embedded_broker_only}
    reported = list_end_offsets(conf, [(topic, 0)])[(topic, 0)]
    assert reported < 10, "if this fails, the broker fixed its ListOffsets answer: simplify core/kafka/offsets.py"
    assert end_offsets(conf, [(topic, 0)]) == {(topic, 0): 10}


def test_worker_stops_cleanly_on_sigterm(pipeline: Pipeline) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    worker.signal(signal.SIGTERM)
    wait_for(
        "the worker to exit within 30 s of SIGTERM",
        lambda: worker.proc is not None and worker.proc.poll() is not None,
        30,
    )
    assert worker.proc is not None and worker.proc.returncode == 0


def test_the_embedded_broker_keeps_a_stopped_stream_group_stable(embedded_broker_only: str, pipeline: Pipeline) -> None:
    """Why replay and rebuild take --force on tansu: after the stream workers stopped, the
    group stays STABLE (with no members listed, as always on tansu), so it never looks idle."""
    from confluent_kafka.admin import AdminClient

    from ops.replay import group_state

    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert worker.stop() == 0
    # What is tested is the passing of time itself: through more than the session timeout (6 s),
    # the stopped group never turns EMPTY.
    admin = AdminClient({"bootstrap.servers": embedded_broker_only})
    until = time.monotonic() + 8
    while time.monotonic() < until:
        state, members = group_state(admin, pipeline.env["APP_ID"])
        assert (state, members) == ("STABLE", 0), "tansu now reports stopped groups right: drop --force from the tests"
        time.sleep(1)


def test_the_embedded_broker_shows_aborted_transactions(embedded_broker_only: str, pipeline: Pipeline) -> None:
    """Why some tests only assert that a failed run's events are invisible on Kafka: tansu
    fences zombie producers, but read_committed consumers still get aborted records."""
    from confluent_kafka import KafkaException

    topic = f"txn-{pipeline.suffix}"
    ensure_topics(pipeline.settings(), [TopicSpec(topic, 1, {"cleanup.policy": "delete", "retention.ms": "-1"})])
    zombie = Producer({"bootstrap.servers": embedded_broker_only, "transactional.id": f"t-{pipeline.suffix}"})
    zombie.init_transactions(10)
    zombie.begin_transaction()
    zombie.produce(topic, b"zombie", b"k", partition=0)
    zombie.flush(10)
    leader = Producer({"bootstrap.servers": embedded_broker_only, "transactional.id": f"t-{pipeline.suffix}"})
    leader.init_transactions(10)  # fences the zombie
    leader.begin_transaction()
    leader.produce(topic, b"leader", b"k", partition=0)
    leader.commit_transaction(10)
    try:
        zombie.commit_transaction(3)
        fenced = False
    except KafkaException:
        fenced = True
    assert fenced, "the zombie producer must be fenced"
    from core.kafka.reading import TopicReader

    values = [i.headers for i in TopicReader(pipeline.settings(), topic).read()]
    assert len(values) == 2, "tansu now hides aborted records: tighten the tests that check failed runs on Kafka only"
