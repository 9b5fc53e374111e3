"""The peer: the same dedup written with Quix Streams (bench/peer_quix.py, in its own .venv-peer)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.common import PARTITIONS, PEER_PYTHON, ROOT, BenchError, log
from core.kafka import KafkaSettings
from core.kafka.topics import TopicSpec, ensure_topics


class Peer:
    """The Quix Streams dedup, run after each of our days on the same new events (one consumer
    group across the days, so each run reads exactly that day's events)."""

    def __init__(self, bootstrap: str, topic: str, suffix: str, state: Path) -> None:
        self.bootstrap, self.topic, self.state = bootstrap, topic, state
        self.group, self.output = f"quix-{suffix}", f"bench-{suffix}.quix-out"
        spec = TopicSpec(
            self.output, PARTITIONS, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
        )
        ensure_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap), [spec])

    def day(self, label: str, events: int, changes: int) -> dict[str, Any]:
        log(f"peer: Quix Streams, {label}")
        proc = subprocess.run(
            [
                str(PEER_PYTHON),
                str(ROOT / "bench" / "peer_quix.py"),
                *("--bootstrap", self.bootstrap, "--topic", self.topic, "--output", self.output),
                *("--group", self.group, "--expect", str(events), "--state-dir", str(self.state)),
                *("--partitions", str(PARTITIONS)),
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(f"the Quix peer failed on {label}: {proc.stderr.strip()[-800:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        if result["events"] != events or result["changes"] != changes:
            raise BenchError(f"the Quix peer on {label}: {result}; expected {events} events, {changes} changes")
        result["eps"] = round(result["events"] / max(result["seconds"], 1e-6))
        return result
