"""What every stage of the benchmark shares: paths, the error of a failed check, logging, the two days."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.waiting import wait_for as _wait_for

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "make_gleif_like.py"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PARTITIONS = 6


class BenchError(Exception):
    """A correctness check failed: the figures of this run are not valid."""


def private_env(bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a pipeline on topics and a group of its own (``<prefix>.events`` …)."""
    private = ("TOPIC_", "SCHEMA_REGISTRY", "PRODUCER_WORKERS", "PRODUCER_COLUMNAR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(private)}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TOPIC_RAW": f"{prefix}.events",
            "TOPIC_CURRENT": f"{prefix}.current",
            "TOPIC_DLQ": f"{prefix}.dlq",
            "TOPIC_RUNS": f"{prefix}.runs",
            "TOPIC_CHANGES": f"{prefix}.changes",
            "TOPIC_IDENTIFIERS": f"{prefix}.identifiers",
            "APP_ID": prefix,
            "TOPIC_PARTITIONS": "6",
        }
    )
    env.update(extra)
    return env


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    return _wait_for(what, check, timeout, interval, error=BenchError)


def make_days(rows: int, tmp: Path) -> tuple[dict[str, int], dict[str, int]]:
    facts = []
    for day in (1, 2):
        out = tmp / f"day{day}.csv"
        proc = subprocess.run(
            [sys.executable, str(TOOL), "--rows", str(rows), "--day", str(day), "--out", str(out), "--zip"],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
        facts.append(json.loads(proc.stdout))
    return facts[0], facts[1]
