"""docker compose up: real Apache Kafka, a real Schema Registry, both apps. Needs a Docker engine."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def docker_unavailable() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0 or not proc.stdout.strip():
        return (proc.stderr.strip() or "docker info failed").splitlines()[-1]
    return None


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - localhost
        return json.loads(resp.read())


@pytest.mark.docker
def test_compose_runs_the_whole_flow_with_kafka_and_the_schema_registry() -> None:
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(f"no Docker engine on this machine ({reason[:120]}); runs docker compose where there is one")
    from testcontainers.compose import DockerCompose

    with DockerCompose(str(REPO), compose_file_name="docker-compose.yml", build=True, wait=True) as compose:
        deadline = time.monotonic() + 600
        stats: object = None
        while time.monotonic() < deadline:
            try:
                stats = get_json("http://localhost:6066/stats")
                if isinstance(stats, dict) and stats.get("isins") == 15460:
                    break
            except OSError:
                pass
            time.sleep(2)
        assert isinstance(stats, dict) and stats["isins"] == 15460, stats
        subjects = get_json("http://localhost:8081/subjects")
        assert isinstance(subjects, list)
        assert "isin.current-value" in subjects
        assert "isin.events-io.isinpipeline.v1.IsinEvent" in subjects
        out, _err, code = compose.exec_in_container(
            ["isin-pipeline", "tail", "--topic", "current", "--max-messages", "1"], service_name="stream"
        )
        assert code == 0
        record = json.loads(out.splitlines()[0])
        assert record["schema"] == "io.isinpipeline.v1.CurrentRecord" and record["value"]["isin"] == record["key"]
