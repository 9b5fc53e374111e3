"""The producer on one process and on every core, alternated on the same 1M-row day and broker.

    python -m bench.producer_cores [--rows 1000000] [--rounds 2]

``PRODUCER_WORKERS=1`` reads, validates and encodes in the run's process; the default cuts the
list into byte ranges for one process per core (producer/parallel.py). Prints rows/s and peak
RSS of each run, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import make_days, private_env
from bench.stages import create_topics, produce
from core.broker import EmbeddedBroker
from isin_pipeline.demo import serve_directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="isin-producer-cores-"))
    make_days(args.rows, tmp)
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    bootstrap = broker.start()
    server = serve_directory(tmp)
    url = f"http://127.0.0.1:{server.server_address[1]}/day1.csv.zip"
    runs: dict[str, list[tuple[int, float]]] = {"one process": [], "one per core": []}
    try:
        for _ in range(args.rounds):
            for name, workers in (("one process", "1"), ("one per core", None)):
                suffix = uuid.uuid4().hex[:8]
                env = private_env(bootstrap, f"cores-{suffix}")
                if workers:
                    env["PRODUCER_WORKERS"] = workers
                create_topics(env)
                summary = produce(env, url, "--source-name", "gleif-bench")
                runs[name].append((round(summary["rows"] / summary["duration_s"]), summary["peak_rss_mb"]))
                print(f"{name:14} {runs[name][-1][0]:>8,} rows/s  peak RSS {runs[name][-1][1]} MB", flush=True)
    finally:
        server.shutdown()
        broker.stop()
    one, every = (statistics.median(r for r, _ in runs[k]) for k in ("one process", "one per core"))
    print(json.dumps({"runs": runs, "one_per_core_over_one_process": round(every / one, 2), "cpus": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
