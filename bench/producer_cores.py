"""The producer's ways of reading a list, alternated on the same 1M-row day and broker.

    python -m bench.producer_cores [--rows 1000000] [--rounds 2] [--out FILE]

- ``one process``: ``PRODUCER_WORKERS=1``, the row loop in the run's process;
- ``rows, one per core``: the list cut into byte ranges, one process per core
  (producer/parallel.py), each range read by the row loop (``PRODUCER_COLUMNAR=false``);
- ``columns, one per core``: the default, plain ranges read as columns (producer/columnar.py).

Prints rows/s and peak RSS of each run, and the ratios of the medians; writes them to ``--out``.
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
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "producer-cores.json")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="isin-producer-cores-"))
    make_days(args.rows, tmp)
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    bootstrap = broker.start()
    server = serve_directory(tmp)
    url = f"http://127.0.0.1:{server.server_address[1]}/day1.csv.zip"
    variants = {
        "one process": {"PRODUCER_WORKERS": "1", "PRODUCER_COLUMNAR": "false"},
        "rows, one per core": {"PRODUCER_COLUMNAR": "false"},
        "columns, one per core": {},
    }
    runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, overrides in variants.items():
                suffix = uuid.uuid4().hex[:8]
                env = private_env(bootstrap, f"cores-{suffix}") | overrides
                create_topics(env)
                summary = produce(env, url, "--source-name", "gleif-bench")
                runs[name].append(
                    (
                        round(summary["rows"] / summary["duration_s"]),
                        summary["peak_rss_mb"],
                        summary["children_peak_rss_mb"],
                    )
                )
                rate, rss, children = runs[name][-1]
                print(f"{name:22} {rate:>8,} rows/s  peak RSS {rss} MB, range processes {children} MB", flush=True)
    finally:
        server.shutdown()
        broker.stop()
    one, rows, columns = (statistics.median(r for r, _, _ in runs[k]) for k in variants)
    result = {
        "rows": args.rows,
        "runs": runs,
        "rows_per_core_over_one_process": round(rows / one, 2),
        "columns_over_rows_per_core": round(columns / rows, 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
