"""`make bench`: isin-pipeline at GLEIF scale, against the limits of this machine, a peer, and itself.

In one run, on one broker, on a synthetic list in GLEIF's layout (shared/tools/make_gleif_like.py,
day 1 and day 2 as zips served over loopback HTTP):

1. limits: raw produce of pre-encoded events, raw consume without decoding (confluent-kafka);
2. producer: `isin-pipeline produce` of day 1, rows/s from HTTP to committed, peak RSS;
3. stream: for each worker count of --workers (`make bench`: 1 and 2), an app of that many workers
   catching up on day 1 (all new), day 2 (changes, deletes, adds) and an identical re-run, each
   produced while the workers were stopped, timed from the first event to caught up; each count
   is its own app (consumer group and compacted topic) on the same raw events, side by side;
4. peer: the same dedup with Quix Streams (bench/peer_quix.py, in .venv-peer);
5. queries: GET /isins/{isin} from 16 concurrent clients over 10k random keys, for each count;
6. with --e2e, a day end to end: day 1 again, on new topics, published while the workers keep up.

Every figure is also printed as a ratio to the limits, the peer or one worker measured in the
same run: absolute numbers on a shared 2-core machine are noise. Correctness is checked as it goes
(the table and the compacted topic must reach the generator's counts) and a failed check fails the
run. Results go to bench/results/latest.json.

    python -m bench.run [--rows 1000000] [--workers 1,2] [--skip-peer] [--e2e] [--out bench/results/latest.json]
    python -m bench.run --rows 9300000 --workers 2 --e2e-only --out bench/results/gleif-9.3m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PARTITIONS, PEER_PYTHON, ROOT, TOOL, BenchError, log, make_days
from bench.limits import limits
from bench.peer import Peer
from bench.queries import queries
from bench.report import DAYS, TARGETS, ratios, report, scaling
from bench.stages import Workers, catch_up, create_topics, end_to_end, produce
from core.broker import EmbeddedBroker
from core.kafka import KafkaSettings
from isin_pipeline.demo import serve_directory
from ops.client import current_set


def app_env(base: dict[str, str], suffix: str, workers: int) -> dict[str, str]:
    """The environment of the app of ``workers`` workers: its own group and compacted topic."""
    return {**base, "APP_ID": f"bench-{suffix}-{workers}w", "TOPIC_CURRENT": f"bench-{suffix}.current-{workers}w"}


def check_day(label: str, s: dict[str, Any], isins: int, new: int, changed: int, deleted: int, workers: int) -> None:
    d = s["dedup"]
    got = (s["isins"], d["new"], d["changed"], d["deleted"])
    if got != (isins, new, changed, deleted):
        raise BenchError(
            f"{label} with {workers} worker(s): (isins, new, changed, deleted) {got}; expected "
            f"{(isins, new, changed, deleted)}"
        )


def day_end_to_end(env: dict[str, str], suffix: str, tmp: Path, base_url: str, rows: int, n: int) -> dict[str, Any]:
    """Stage 6: day 1 again, on topics of its own, published while ``n`` workers keep up."""
    log(f"end to end: day 1 published while {n} worker(s) keep up")
    env = {k: v.replace(f"bench-{suffix}", f"bench-{suffix}-e2e") for k, v in env.items()}
    create_topics(env)
    workers = Workers(env, tmp / "app-e2e", n, PARTITIONS)
    return end_to_end(env, workers, f"{base_url}/day1.csv.zip", rows, PARTITIONS)


def run(
    rows: int, skip_peer: bool, counts: list[int], tmp: Path, e2e: bool = False, e2e_only: bool = False
) -> dict[str, Any]:
    log(f"generating {rows} rows, day 1 and day 2")
    day1, day2 = make_days(rows, tmp)
    server = serve_directory(tmp)
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
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

        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "SCHEMA_REGISTRY"))},
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TOPIC_RAW": f"bench-{suffix}.events",
            "TOPIC_DLQ": f"bench-{suffix}.dlq",
            "TOPIC_RUNS": f"bench-{suffix}.runs",
            "TOPIC_CHANGES": f"bench-{suffix}.changes",
            "TOPIC_IDENTIFIERS": f"bench-{suffix}.identifiers",
            "TOPIC_PARTITIONS": str(PARTITIONS),
        }
        envs = {n: app_env(base, suffix, n) for n in counts}
        for env in envs.values():
            create_topics(env)
        if e2e_only:
            result["e2e"] = day_end_to_end(envs[counts[-1]], suffix, tmp, base_url, day1["rows"], counts[-1])
            return result
        producer_env = envs[counts[0]]
        name = ("--source-name", "gleif-bench")

        log("producer: day 1")
        p1 = produce(producer_env, f"{base_url}/day1.csv.zip", *name)
        if p1["valid"] != day1["rows"]:
            raise BenchError(f"day 1: {p1['valid']} valid rows, expected {day1['rows']}")
        result["producer"] = {
            "rows_per_s": round(p1["rows"] / p1["duration_s"]),
            "duration_s": p1["duration_s"],
            "wall_s": p1["wall_s"],
            "peak_rss_mb": p1["peak_rss_mb"],
            "range_processes_peak_rss_mb": p1["children_peak_rss_mb"],
            "ranges": p1["layout"].get("ranges"),
            "ranges_as_columns": p1["layout"].get("ranges_as_columns"),
            "transactions": p1["transactions"],
            "longest_transaction_s": p1["longest_transaction_s"],
        }
        apps = {n: Workers(envs[n], tmp / f"app-{n}w", n, PARTITIONS) for n in counts}
        peer = None if skip_peer else Peer(bootstrap, base["TOPIC_RAW"], suffix, tmp / "quix-state")
        days: dict[int, dict[str, dict[str, Any]]] = {n: {} for n in counts}
        quix: dict[str, Any] = {}

        def stream_day(day: str, events: int, expect: tuple[int, int, int, int]) -> None:
            for n in counts:
                log(f"stream: {day}, {n} worker(s)")
                s = catch_up(apps[n], events, PARTITIONS)
                check_day(day, s, *expect, workers=n)
                days[n][day] = s

        stream_day("day1", day1["rows"], (day1["rows"], day1["rows"], 0, 0))
        if peer:
            quix["day1"] = peer.day("day 1", day1["rows"], day1["rows"])
        log("producer: day 2")
        produce(producer_env, f"{base_url}/day2.csv.zip", *name)
        stream_day("day2", day2["rows"], (day2["rows"], day2["added"], day2["changed"], day2["removed"]))
        if peer:  # the peer does not delete (it skips the end-of-run markers): it emits adds and changes
            quix["day2"] = peer.day("day 2", day2["rows"], day2["added"] + day2["changed"])
        log("producer: day 2 again (forced)")
        produce(producer_env, f"{base_url}/day2.csv.zip", *name, "--force-publish")
        stream_day("rerun", day2["rows"], (day2["rows"], 0, 0, 0))
        if peer:
            quix["rerun"] = peer.day("re-run", day2["rows"], 0)

        for n in counts:
            settings = KafkaSettings(kafka_bootstrap_servers=bootstrap, topic_current=envs[n]["TOPIC_CURRENT"])
            held = len(current_set(settings))
            if held != day2["rows"]:
                raise BenchError(f"the compacted topic of {n} worker(s) holds {held} ISINs, expected {day2['rows']}")
        for n in counts:
            key = "stream" if n == counts[0] else f"stream_{n}w"
            pairs = (("eps", "eps"), ("s", "seconds"), ("feeds_s", "feeds_s"), ("peak_rss_mb", "workers_peak_rss_mb"))
            result[key] = {f"{day}_{f}": days[n][day][k] for day in DAYS for f, k in pairs}
            result[key]["workers"] = n
        if 2 in counts and counts[0] == 1:
            result["scaling"] = scaling(result["stream"], result["stream_2w"])
        if quix:
            result["peer"] = {
                "quix": {f"{d}_{f}": quix[d][k] for d in DAYS for f, k in (("eps", "eps"), ("s", "seconds"))}
            }
        else:
            result["peer"] = {"quix": None, "skipped": "--skip-peer"}

        keys = random.Random(7).sample(sorted(_isins(tmp / "day2.csv")), min(10_000, day2["rows"]))
        for n in counts:
            log(f"queries: 16 clients, {n} worker(s)")
            apps[n].start()
            try:
                q = queries(apps[n].api, keys, total=min(20_000, 40 * len(keys), rows // 4))
            finally:
                apps[n].stop()
            if n == counts[0]:
                result["queries"] = q
            else:
                result["queries"][f"p50_ms_{n}w"], result["queries"][f"p99_ms_{n}w"] = q["p50_ms"], q["p99_ms"]
                result["queries"][f"rps_{n}w"] = q["rps"]
        if e2e:
            result["e2e"] = day_end_to_end(envs[counts[-1]], suffix, tmp, base_url, day1["rows"], counts[-1])
        return result
    finally:
        server.shutdown()
        if broker is not None:
            broker.stop()


def _isins(path: Path) -> list[str]:
    with path.open() as f:
        next(f)
        return [line.rstrip("\n").split(",")[1] for line in f]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-peer", action="store_true", help="do not run the Quix Streams peer")
    parser.add_argument("--workers", default="1", help="worker counts to measure side by side, e.g. 1,2 (default 1)")
    parser.add_argument(
        "--e2e",
        action="store_true",
        help="also time a day end to end: published while the workers (the largest --workers count) keep up",
    )
    parser.add_argument(
        "--e2e-only", action="store_true", help="only the limits and the day end to end (for a full 9.3M-row day)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the lists, logs and state even when the run passes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.workers.split(",")})
    if not TOOL.is_file():
        print(f"bench: {TOOL} is missing (../shared beside the repo)", file=sys.stderr)
        return 2
    if not args.skip_peer and not PEER_PYTHON.exists():
        print("bench: .venv-peer is missing: run `make bench` (it creates it) or pass --skip-peer", file=sys.stderr)
        return 2
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="isin-bench-"))
    try:
        result = run(args.rows, args.skip_peer or args.e2e_only, counts, tmp, args.e2e, args.e2e_only)
    except BenchError as exc:
        # the lists, the broker's and every worker's log stay for the post-mortem
        print(f"bench: FAILED: {exc}\nbench: logs and state kept in {tmp}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"bench: logs and state kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "broker": "external" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "embedded (tansu)",
        "max_rss_of_bench_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    result["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    result["ratios"] = ratios(result) if "stream" in result else {}
    result["targets"] = TARGETS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(json.dumps({"out": str(args.out), **result["ratios"], **result.get("scaling", {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
