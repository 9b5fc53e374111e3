"""`make bench`: isin-pipeline at GLEIF scale, against the limits of this machine and a peer.

In one run, on one broker, on a synthetic list in GLEIF's layout (shared/tools/make_gleif_like.py,
day 1 and day 2 as zips served over loopback HTTP):

1. limits: raw produce of pre-encoded events, raw consume without decoding (confluent-kafka);
2. producer: `isin-pipeline produce` of day 1, rows/s from HTTP to committed, peak RSS;
3. stream: a worker catching up on day 1 (all new), day 2 (changes, deletes, adds) and an
   identical re-run, each produced while the worker was stopped, timed from ready to caught up;
4. peer: the same dedup with Quix Streams (bench/peer_quix.py, in .venv-peer);
5. queries: GET /isins/{isin} from 16 concurrent clients over 10k random keys.

Every figure is also printed as a ratio to the limits or the peer measured in the same run:
absolute numbers on a shared 2-core machine are noise. Correctness is checked as it goes (the
table and the compacted topic must reach the generator's counts) and a failed check fails the
run. Results go to bench/results/latest.json.

    python -m bench.run [--rows 1000000] [--workers 1] [--skip-peer] [--out bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from core.broker import EmbeddedBroker, free_port
from core.kafka import KafkaSettings
from core.kafka.topics import TopicSpec, ensure_topics
from isin_pipeline.demo import get_json, serve_directory
from schemas import content_hash, make_serde
from schemas.fastpath import EventEncoder
from stream_app.client import current_set

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "make_gleif_like.py"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PARTITIONS = 6
LIMITS_SAMPLE = 2_000_000


class BenchError(Exception):
    """A correctness check failed: the figures of this run are not valid."""


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


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


# -- 1. limits ---------------------------------------------------------------------------


def limits(bootstrap: str, csv_path: Path, rows: int, suffix: str) -> dict[str, float]:
    """Raw produce of the day's events, pre-encoded; raw consume of them, not decoded.

    Rates, measured on the first LIMITS_SAMPLE rows: at full scale, holding 9.3 million
    pre-encoded records in memory would cost the bench several GB for no better figure."""
    topic = f"bench-{suffix}.limits"
    settings = KafkaSettings(kafka_bootstrap_servers=bootstrap)
    ensure_topics(
        settings,
        [TopicSpec(topic, PARTITIONS, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})],
    )
    encode = EventEncoder(make_serde(None), topic, "bench", "limits", int(time.time() * 1000))
    with csv_path.open(newline="") as f:
        sample = itertools.islice(enumerate(csv.reader(f), start=1), 1, LIMITS_SAMPLE + 1)  # after the header
        records = [
            (isin.encode(), encode(isin, n, {"lei": lei}, content_hash("bench", {"lei": lei})))
            for n, (lei, isin) in sample
        ]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "batch.size": 1024 * 1024,
            "partitioner": "murmur2_random",
        }
    )
    started = time.perf_counter()
    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if not i % 10_000:
            producer.poll(0)
    if producer.flush(120):
        raise BenchError("raw produce: records left unacknowledged")
    produce_s = time.perf_counter() - started

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{suffix}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 50,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got, started = 0, time.perf_counter()
    deadline = started + 300
    while got < len(records) and time.perf_counter() < deadline:
        for msg in consumer.consume(10_000, timeout=0.5):
            if msg.error() is None:
                got += 1
    consume_s = time.perf_counter() - started
    consumer.close()
    if got < len(records):
        raise BenchError(f"raw consume: {got} of {len(records)} records")
    return {
        "produce_rps": round(len(records) / produce_s),
        "consume_rps": round(got / consume_s),
        "records": len(records),
    }


# -- 2. producer ---------------------------------------------------------------------------


def produce(env: dict[str, str], url: str, *args: str) -> dict[str, Any]:
    """One `isin-pipeline produce`: its summary, wall time and peak RSS.

    The peak is the child's own VmHWM, read from /proc while it runs: ``ru_maxrss`` of a child
    started by fork or vfork counts the parent's memory at the fork (here, the records of the
    limits stage) and overstated the producer's peak by hundreds of MB."""
    started = time.perf_counter()
    # output to files, not pipes: nothing reads a pipe while the loop below polls /proc
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "isin_pipeline", "--log-level", "WARNING", "produce", "--source", url, *args],
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        peak_kb = 0
        status_file = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if proc.returncode != 0:
        raise BenchError(f"produce exited {proc.returncode}: {err.strip()[-500:]}")
    summary = json.loads(out.strip().splitlines()[-1])
    if summary.get("status") != "succeeded":
        raise BenchError(f"produce did not publish: {summary.get('status')}: {summary.get('reason')}")
    if not peak_kb:
        raise BenchError("could not read the producer's peak RSS from /proc")
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    summary["peak_rss_mb"] = round(peak_kb / 1024, 1)
    return dict(summary)


# -- 3. stream -----------------------------------------------------------------------------


class Worker:
    def __init__(self, env: dict[str, str], state: Path, log_path: Path) -> None:
        self.env, self.state, self.log_path = env, state, log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start, and wait until ready; returns the time it became ready."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "isin_pipeline",
                    "stream",
                    "--web-port",
                    str(self.port),
                    "--state-dir",
                    str(self.state),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> float:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"the worker exited with {self.proc.returncode}; see {self.log_path}")
            try:
                return get_json(f"{self.api}/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for("the worker to be ready", ready, 600, 0.05)
        return time.perf_counter()

    def stats(self) -> dict[str, Any]:
        status, body = get_json(f"{self.api}/stats", timeout=30)
        if status != 200:
            raise BenchError(f"/stats answered {status}")
        return dict(body)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


class Workers:
    """One or more stream workers of one app, each with its own state directory and port."""

    def __init__(self, env: dict[str, str], tmp: Path, count: int) -> None:
        self.members = [Worker(env, tmp / f"state-{i}", tmp / f"worker-{i}.log") for i in range(count)]

    @property
    def api(self) -> str:
        return self.members[0].api

    def start(self) -> float:
        for member in self.members:
            member.launch()
        return max(member.wait_ready() for member in self.members)

    def stats(self) -> dict[str, Any]:
        """The app's /stats (any worker answers for all) with the dedup counters summed."""
        stats = self.members[0].stats()
        if not stats["complete"]:
            return {}
        per_worker = [w["dedup"] for w in stats["workers"]]
        dedup = {k: sum(d[k] for d in per_worker) for k in per_worker[0] if not k.endswith("_at")}
        dedup["first_event_at"] = min((d["first_event_at"] for d in per_worker if d["first_event_at"]), default=0.0)
        return {**stats, "dedup": dedup}

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def catch_up(workers: Workers, events: int, markers: int) -> dict[str, Any]:
    """Start the workers on what is waiting in the raw topic and wait until they have processed it.

    ``eps`` counts from the first event a worker took to caught up, as the peer is measured (from
    its first event to its last); ``wall_s`` adds the start-up: from ready to caught up."""
    ready_at = workers.start()

    def done() -> dict[str, Any] | None:
        stats = workers.stats()
        d = stats.get("dedup")
        return stats if d and d["events"] >= events and d["markers"] >= markers else None

    stats = wait_for(f"{events} events", done, 3600, 0.05)
    caught_up = time.time()
    wall = time.perf_counter() - ready_at
    dedup = stats["dedup"]
    seconds = caught_up - dedup["first_event_at"]
    workers.stop()
    return {
        "seconds": round(seconds, 3),
        "eps": round(events / seconds),
        "wall_s": round(wall, 3),
        "isins": stats["isins"],
        "dedup": dedup,
    }


# -- 4. peer ---------------------------------------------------------------------------------


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


# -- 5. queries ------------------------------------------------------------------------------


def queries(api: str, keys: list[str], clients: int = 16, total: int = 20_000) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def client(session: aiohttp.ClientSession, n: int, rng: random.Random) -> None:
        nonlocal errors
        for _ in range(n):
            started = time.perf_counter()
            async with session.get(f"{api}/isins/{rng.choice(keys)}") as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    async def main() -> float:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            await asyncio.gather(*(client(session, total // clients, random.Random(i)) for i in range(clients)))
            return time.perf_counter() - started

    seconds = asyncio.run(main())
    if errors:
        raise BenchError(f"{errors} queries did not answer 200")
    latencies.sort()
    return {
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
        "rps": round(len(latencies) / seconds),
        "clients": clients,
        "requests": len(latencies),
    }


# -- the run -----------------------------------------------------------------------------------


def run(rows: int, skip_peer: bool, workers: int, tmp: Path) -> dict[str, Any]:
    log(f"generating {rows} rows, day 1 and day 2")
    day1, day2 = make_days(rows, tmp)
    server = serve_directory(tmp)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if bootstrap else EmbeddedBroker(log_path=tmp / "broker.log")
    suffix = uuid.uuid4().hex[:8]
    try:
        if broker is not None:
            bootstrap = broker.start()
        assert bootstrap is not None
        result: dict[str, Any] = {"rows": rows, "facts": {"day1": day1, "day2": day2}}

        log("limits: raw produce and raw consume")
        result["limits"] = limits(bootstrap, tmp / "day1.csv", rows, suffix)

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "SCHEMA_REGISTRY"))},
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TOPIC_RAW": f"bench-{suffix}.events",
            "TOPIC_CURRENT": f"bench-{suffix}.current",
            "TOPIC_DLQ": f"bench-{suffix}.dlq",
            "TOPIC_RUNS": f"bench-{suffix}.runs",
            "APP_ID": f"bench-{suffix}",
            "TOPIC_PARTITIONS": str(PARTITIONS),
        }
        name = ("--source-name", "gleif-bench")

        log("producer: day 1")
        p1 = produce(env, f"{base}/day1.csv.zip", *name)
        if p1["valid"] != day1["rows"]:
            raise BenchError(f"day 1: {p1['valid']} valid rows, expected {day1['rows']}")
        result["producer"] = {
            "rows_per_s": round(p1["rows"] / p1["duration_s"]),
            "duration_s": p1["duration_s"],
            "wall_s": p1["wall_s"],
            "peak_rss_mb": p1["peak_rss_mb"],
        }

        worker = Workers(env, tmp, workers)
        peer = None if skip_peer else Peer(bootstrap, env["TOPIC_RAW"], suffix, tmp / "quix-state")

        log("stream: day 1")
        s1 = catch_up(worker, day1["rows"], PARTITIONS)
        if s1["isins"] != day1["rows"] or s1["dedup"]["new"] != day1["rows"]:
            raise BenchError(f"day 1: table has {s1['isins']} ISINs, {s1['dedup']['new']} new; expected {day1['rows']}")
        q1 = peer.day("day 1", day1["rows"], day1["rows"]) if peer else None

        log("producer: day 2")
        produce(env, f"{base}/day2.csv.zip", *name)
        log("stream: day 2")
        s2 = catch_up(worker, day2["rows"], PARTITIONS)
        d = s2["dedup"]
        got = (d["new"], d["changed"], d["deleted"])
        if s2["isins"] != day2["rows"] or got != (day2["added"], day2["changed"], day2["removed"]):
            raise BenchError(f"day 2: isins {s2['isins']}, (new, changed, deleted) {got}; expected {day2}")
        # the peer does not delete (it skips the end-of-run markers): it emits the adds and changes
        q2 = peer.day("day 2", day2["rows"], day2["added"] + day2["changed"]) if peer else None

        log("producer: day 2 again (forced)")
        produce(env, f"{base}/day2.csv.zip", *name, "--force-publish")
        log("stream: re-run")
        s3 = catch_up(worker, day2["rows"], PARTITIONS)
        if s3["dedup"]["new"] or s3["dedup"]["changed"] or s3["dedup"]["deleted"]:
            raise BenchError(f"re-run: changes emitted: {s3['dedup']}")
        q3 = peer.day("re-run", day2["rows"], 0) if peer else None

        current = current_set(KafkaSettings(kafka_bootstrap_servers=bootstrap, topic_current=env["TOPIC_CURRENT"]))
        if len(current) != day2["rows"]:
            raise BenchError(f"the compacted topic holds {len(current)} ISINs, expected {day2['rows']}")
        result["stream"] = {
            "day1_eps": s1["eps"],
            "day2_eps": s2["eps"],
            "rerun_eps": s3["eps"],
            "day1_s": s1["seconds"],
            "day2_s": s2["seconds"],
            "rerun_s": s3["seconds"],
            "day1_wall_s": s1["wall_s"],
            "day2_wall_s": s2["wall_s"],
            "rerun_wall_s": s3["wall_s"],
            "workers": workers,
        }
        if q1 and q2 and q3:
            result["peer"] = {
                "quix": {
                    "day1_eps": q1["eps"],
                    "day2_eps": q2["eps"],
                    "rerun_eps": q3["eps"],
                    "day1_s": q1["seconds"],
                    "day2_s": q2["seconds"],
                    "rerun_s": q3["seconds"],
                }
            }
        else:
            result["peer"] = {"quix": None, "skipped": "--skip-peer"}

        log("queries: 16 clients")
        worker.start()
        try:
            keys = random.Random(7).sample(sorted(current), min(10_000, len(current)))
            result["queries"] = queries(worker.api, keys, total=min(20_000, 40 * len(keys)))
        finally:
            worker.stop()
        return result
    finally:
        server.shutdown()
        if broker is not None:
            broker.stop()


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    lim, s = r["limits"], r["stream"]
    out: dict[str, Any] = {
        "producer_vs_raw_produce": round(r["producer"]["rows_per_s"] / lim["produce_rps"], 3),
        "day1_vs_raw_consume": round(s["day1_eps"] / lim["consume_rps"], 3),
        "day2_vs_raw_consume": round(s["day2_eps"] / lim["consume_rps"], 3),
        "rerun_vs_raw_consume": round(s["rerun_eps"] / lim["consume_rps"], 3),
    }
    quix = r["peer"].get("quix")
    if quix:
        for day in ("day1", "day2", "rerun"):
            out[f"{day}_vs_quix"] = round(s[f"{day}_eps"] / quix[f"{day}_eps"], 2)
    return out


TARGETS = {
    "producer_vs_raw_produce": 0.5,
    "day1_vs_raw_consume": 0.15,
    "day2_vs_raw_consume": 0.15,
    "rerun_vs_raw_consume": 0.3,
    "day1_vs_quix": 3.0,
    "day2_vs_quix": 3.0,
    "rerun_vs_quix": 3.0,
}


def report(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    workers = r["stream"].get("workers", 1)
    table = Table(title=f"isin-pipeline bench, {r['rows']:,} rows, {workers} worker(s), {r['machine']['cpus']} CPUs")
    for column in ("figure", "value", "ratio", "target", "met"):
        table.add_column(column)
    lim, s, q = r["limits"], r["stream"], r["queries"]
    rows = [
        ("raw produce (limit)", f"{lim['produce_rps']:,}/s", "1", "", ""),
        ("raw consume (limit)", f"{lim['consume_rps']:,}/s", "1", "", ""),
        ("producer, HTTP to committed", f"{r['producer']['rows_per_s']:,} rows/s", "producer_vs_raw_produce"),
        (
            "producer peak RSS",
            f"{r['producer']['peak_rss_mb']} MB",
            "",
            "≤ 200 MB",
            "yes" if r["producer"]["peak_rss_mb"] <= 200 else "NO",
        ),
        ("stream day 1 (all new)", f"{s['day1_eps']:,} ev/s", "day1_vs_raw_consume"),
        ("stream day 2 (changes, deletes)", f"{s['day2_eps']:,} ev/s", "day2_vs_raw_consume"),
        ("stream re-run (no change)", f"{s['rerun_eps']:,} ev/s", "rerun_vs_raw_consume"),
    ]
    for day in ("day1", "day2", "rerun"):
        if r["peer"].get("quix"):
            rows.append(
                (f"vs Quix Streams, {day}", f"{r['peer']['quix'][f'{day}_eps']:,} ev/s (Quix)", f"{day}_vs_quix")
            )
    rows.append(
        (
            "query p50 / p99",
            f"{q['p50_ms']} / {q['p99_ms']} ms",
            "",
            "p99 ≤ 10 ms",
            "yes" if q["p99_ms"] <= 10 else "NO",
        )
    )
    rows.append(("queries", f"{q['rps']:,} req/s ({q['clients']} clients)", "", "", ""))
    for row in rows:
        if len(row) == 3:
            label, value, key = row
            ratio = r["ratios"][key]
            target = TARGETS[key]
            table.add_row(label, value, f"{ratio}x", f"≥ {target}x", "yes" if ratio >= target else "NO")
        else:
            table.add_row(*row)
    Console(stderr=True).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-peer", action="store_true", help="do not run the Quix Streams peer")
    parser.add_argument("--workers", type=int, default=1, help="stream workers (processes) of the app")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    if not TOOL.is_file():
        print(f"bench: {TOOL} is missing (../shared beside the repo)", file=sys.stderr)
        return 2
    if not args.skip_peer and not PEER_PYTHON.exists():
        print("bench: .venv-peer is missing: run `make bench` (it creates it) or pass --skip-peer", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="isin-bench-") as tmp:
        try:
            result = run(args.rows, args.skip_peer, args.workers, Path(tmp))
        except BenchError as exc:
            print(f"bench: FAILED: {exc}", file=sys.stderr)
            return 1
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "broker": "external" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "embedded (tansu)",
        "max_rss_of_bench_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    result["ratios"] = ratios(result)
    result["targets"] = TARGETS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(json.dumps({"out": str(args.out), **result["ratios"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
