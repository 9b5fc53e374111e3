"""Lookups on two workers, answered from standby copies and forwarded to the owner, side by side.

    python -m bench.lookups [--workers 2] [--requests 20000]

The NSDL list (real, 15,460 ISINs) through the producer into the workers' table, then
``GET /isins/{isin}`` from 16 concurrent clients on the first worker, once with
``QUERY_STANDBYS=false`` (a key of the other worker's partition is forwarded) and once with
the default (a caught-up standby copy answers). Also prints the CPU seconds the workers and the
clients spent, since both share this machine's cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.common import private_env, wait_for
from bench.queries import queries
from bench.stages import Workers, create_topics, produce
from core.broker import EmbeddedBroker
from isin_pipeline.demo import serve_directory

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LIST = "nsdl_india-isin_ISIN_20240831.csv"
ROWS = 15460


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(bootstrap: str, url: str, tmp: Path, count: int, requests: int, standbys: bool) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    env = private_env(bootstrap, f"lookups-{suffix}", QUERY_STANDBYS=str(standbys).lower())
    create_topics(env)
    produce(env, url)
    workers = Workers(env, tmp / suffix, count, 6)
    workers.start()
    try:
        wait_for("the table", lambda: (workers.stats().get("isins") or 0) >= ROWS, 300)
        with (DATA / LIST).open(newline="") as f:
            keys = random.Random(1).sample([row["ISIN"] for row in csv.DictReader(f)], 5000)
        queries(workers.api, keys, total=2000)  # warm up
        pids = [m.proc.pid for m in workers.members if m.proc is not None]
        cpu0, own0 = [_cpu_s(p) for p in pids], _own_cpu_s()
        result: dict[str, Any] = dict(queries(workers.api, keys, total=requests))
        result["workers_cpu_s"] = [round(_cpu_s(p) - c, 2) for p, c in zip(pids, cpu0, strict=True)]
        result["clients_cpu_s"] = round(_own_cpu_s() - own0, 2)
        return result
    finally:
        workers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="isin-lookups-"))
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    bootstrap = broker.start()
    server = serve_directory(DATA)
    url = f"http://127.0.0.1:{server.server_address[1]}/{LIST}"
    try:
        results = {
            "forwarded to the owner": measure(bootstrap, url, tmp, args.workers, args.requests, standbys=False),
            "from standby copies": measure(bootstrap, url, tmp, args.workers, args.requests, standbys=True),
        }
    finally:
        server.shutdown()
        broker.stop()
    for name, r in results.items():
        print(
            f"{name:24} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  {r['rps']:>6,} req/s  "
            f"CPU s: workers {r['workers_cpu_s']}, clients {r['clients_cpu_s']}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
