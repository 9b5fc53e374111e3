"""One record shape: the HTTP API, snapshot, tail and the example consumers agree, to the letter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from tests.conftest import REPO
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline

SCHEMA = json.loads((REPO / "schemas" / "current_record.schema.json").read_text())
ISIN = "INE144J01027"


def example(name: str, pipeline: Pipeline) -> dict[str, Any]:
    """Run an example consumer over the whole compacted topic; the last record of ISIN it printed."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / name),
            "--bootstrap",
            pipeline.bootstrap,
            "--topic",
            pipeline.env["TOPIC_CURRENT"],
            "--group",
            f"{name}-{pipeline.suffix}",
            "--from-beginning",
            "--idle-exit",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len({line["isin"] for line in lines}) == 2387, f"{name} did not read the whole topic"
    return [line["record"] for line in lines if line["isin"] == ISIN][-1]  # type: ignore[no-any-return]


def test_every_way_of_reading_a_record_gives_the_same_json(
    pipeline: Pipeline, list_server: ListServer, tmp_path: Path
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    assert pipeline.produce(list_server.url("/data/nse_EQUITY_L.csv")).returncode == 0
    pipeline.wait_processed(2387, markers=pipeline.partitions)

    status, api = worker.get(f"/isins/{ISIN}")
    assert status == 200
    jsonschema.validate(api, SCHEMA)

    out = tmp_path / "current.jsonl"
    assert pipeline.cli("snapshot", "--out", str(out)).returncode == 0
    snapshot = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(snapshot) == 2387
    for record in snapshot[:50]:
        jsonschema.validate(record, SCHEMA)

    tail = pipeline.cli("tail", "--topic", "current", "--from-beginning")
    values = [json.loads(line) for line in tail.stdout.splitlines()]
    tailed = [v["value"] for v in values if v["key"] == ISIN][-1]

    assert next(r for r in snapshot if r["isin"] == ISIN) == api
    assert tailed == api
    assert example("consume_confluent.py", pipeline) == api
    assert example("consume_kafka_python.py", pipeline) == api
