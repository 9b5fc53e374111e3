"""Run the real CLI against a real broker: producers and stream workers as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.broker import free_port
from core.kafka import KafkaSettings
from core.waiting import wait_for as core_wait_for
from ops.client import Item, TopicReader, current_set


@dataclass
class Produced:
    returncode: int
    summary: dict[str, Any] | None
    stdout: str
    stderr: str

    @property
    def last_error_line(self) -> str:
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; bounded in time (``core.waiting``, the
    test's failure an AssertionError)."""
    return core_wait_for(what, check, timeout, interval, error=AssertionError)


class Proc:
    """An ``isin-pipeline`` subprocess with its log in a file; stopped by its pid."""

    def __init__(self, name: str, env: dict[str, str], log: Path, args: list[str]) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "isin_pipeline", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node failure would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Worker(Proc):
    """One ``isin-pipeline stream`` subprocess."""

    def __init__(self, name: str, env: dict[str, str], state_dir: Path, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.state_dir = state_dir
        super().__init__(name, env, log, [])

    def start(self) -> Worker:
        self.args = ["stream", "--web-port", str(self.port), "--state-dir", str(self.state_dir)]
        super().start()
        return self

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        req = urllib.request.Request(self.api + path, headers=headers or {})  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"null")
            except ValueError:
                return exc.code, body.decode(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> float:
        started = time.monotonic()

        def healthy() -> bool:
            assert self.alive(), (
                f"worker {self.name} exited with {self.proc.returncode if self.proc else None}:\n{self.tail()}"
            )
            try:
                return self.get("/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(f"worker {self.name} to be healthy", healthy, timeout)
        return time.monotonic() - started

    def stats(self) -> dict[str, Any]:
        status, body = self.get("/stats")
        assert status == 200, body
        return dict(body)

    def local_dedup(self) -> dict[str, Any]:
        return dict(self.stats()["workers"][0]["dedup"])


@dataclass
class Pipeline:
    """One test's private set of topics and consumer group on the shared broker."""

    bootstrap: str
    suffix: str
    tmp: Path
    partitions: int = 6
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    _topics_created: bool = False

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "SCHEMA_REGISTRY"))}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "TOPIC_RAW": f"it-{self.suffix}.events",
                "TOPIC_CURRENT": f"it-{self.suffix}.current",
                "TOPIC_DLQ": f"it-{self.suffix}.dlq",
                "TOPIC_RUNS": f"it-{self.suffix}.runs",
                "TOPIC_CHANGES": f"it-{self.suffix}.changes",
                "TOPIC_IDENTIFIERS": f"it-{self.suffix}.identifiers",
                "TOPIC_PARTITIONS": str(self.partitions),
                "APP_ID": f"it-{self.suffix}",
                "HTTP_RETRIES": "1",
                "HTTP_BACKOFF_S": "0.05",
                "LOG_LEVEL": "INFO",
                "LIBRARY_LOG_LEVEL": "INFO",  # Faust's lifecycle in the worker logs a failed test prints
            }
        )
        env.update(self.extra_env)
        return env

    def settings(self) -> KafkaSettings:
        env = self.env
        return KafkaSettings(
            kafka_bootstrap_servers=self.bootstrap,
            topic_raw=env["TOPIC_RAW"],
            topic_current=env["TOPIC_CURRENT"],
            topic_dlq=env["TOPIC_DLQ"],
            topic_runs=env["TOPIC_RUNS"],
            topic_changes=env["TOPIC_CHANGES"],
            topic_identifiers=env["TOPIC_IDENTIFIERS"],
            topic_partitions=self.partitions,
        )

    def cli(self, *args: str, timeout: float = 180.0, env: dict[str, str] | None = None) -> Produced:
        proc = subprocess.run(
            [sys.executable, "-m", "isin_pipeline", *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        summary = None
        out = proc.stdout.strip().splitlines()
        if out:
            try:
                summary = json.loads(out[-1])
            except ValueError:
                summary = None
        return Produced(proc.returncode, summary, proc.stdout, proc.stderr)

    def produce(self, source: str, *args: str, timeout: float = 180.0) -> Produced:
        return self.cli("produce", "--source", source, *args, timeout=timeout)

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        """Any other long-running command (a scheduler), stopped at the end of the test."""
        proc = Proc(name, env or self.env, self.tmp / f"{name}.log", list(args))
        self.procs.append(proc)
        return proc

    def create_topics(self) -> None:
        """The explicit step before a worker starts (workers never create topics)."""
        proc = self.cli("topics", "create", timeout=60)
        assert proc.returncode == 0, proc.stderr

    def worker(self, name: str = "w1", port: int | None = None) -> Worker:
        if not self._topics_created:
            self.create_topics()
            self._topics_created = True
        worker = Worker(name, self.env, self.tmp / f"state-{name}", self.tmp / f"{name}.log", port)
        self.workers.append(worker)
        return worker

    def items(self, topic: str) -> list[Item]:
        return list(TopicReader(self.settings(), topic).read())

    def current(self) -> dict[str, dict[str, Any]]:
        return current_set(self.settings())

    def wait_processed(self, events: int, markers: int = 0, timeout: float = 120.0) -> dict[str, Any]:
        """Until the workers together processed ``events`` events and ``markers`` markers."""

        def done() -> dict[str, Any] | None:
            live = [w for w in self.workers if w.alive()]
            assert live, "no worker is running"
            stats = live[0].stats()
            if not stats.get("complete"):
                return None
            ev = sum(w.get("dedup", {}).get("events", 0) for w in stats["workers"])
            mk = sum(w.get("dedup", {}).get("markers", 0) for w in stats["workers"])
            return stats if ev >= events and mk >= markers else None

        return dict(wait_for(f"{events} events and {markers} markers processed", done, timeout))

    def idle_group_flags(self, group: str | None = None, timeout: float = 60.0) -> list[str]:
        """After a group's consumers stopped: the flags ``replay``/``rebuild`` need to go ahead.

        Kafka reports the group empty a session timeout after its last member left: wait for
        that. The embedded broker never does (see ops/replay.py): pass --force.
        """
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            return ["--force"]
        self.wait_group_idle(group, timeout)
        return []

    def wait_group_idle(self, group: str | None = None, timeout: float = 60.0) -> None:
        """Until the broker reports the consumer group empty (a session timeout after the last member)."""
        from confluent_kafka.admin import AdminClient

        from ops.replay import IDLE_STATES, group_state

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        name = group or self.env["APP_ID"]

        def idle() -> bool:
            state, members = group_state(admin, name)
            return state in IDLE_STATES and members == 0

        wait_for(f"consumer group {name} to be empty", idle, timeout, interval=0.5)

    def runs(self) -> list[dict[str, Any]]:
        """Every record of the runs topic, in order (none before the topic exists)."""
        from core.errors import BrokerError

        try:
            return [i.record for i in self.items(self.env["TOPIC_RUNS"]) if i.record]
        except BrokerError as exc:
            if "does not exist" in str(exc):
                return []
            raise

    def run_statuses(self, run_id: str) -> list[str]:
        """One run's records in the runs topic: its claim, its heartbeats folded into it (each a
        RUNNING record with a later ``heartbeat_at``, checked here), then its final record(s)."""
        records = [r for r in self.runs() if r["run_id"] == run_id]
        out: list[str] = []
        beat = None
        for r in records:
            if r["status"] == "RUNNING" and out == ["RUNNING"]:
                assert beat is not None and r["heartbeat_at"] > beat, "a renewal that does not move the heartbeat"
            else:
                out.append(str(r["status"]))
            beat = r.get("heartbeat_at")
        return out

    def close(self) -> None:
        for proc in [*self.procs, *self.workers]:
            proc.stop()
