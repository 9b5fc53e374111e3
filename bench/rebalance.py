"""Takeover time after a worker dies, with and without standby replicas.

Two stream workers share a table of N ISINs (synthetic, GLEIF layout). One is killed with
SIGKILL; the clock runs until the survivor answers GET /isins/{isin} for keys of every
partition. Run once with STANDBY_REPLICAS=1 and once with 0, in the same process, on one
broker; the ratio is the figure (absolute times on this machine are noise).

    python -m bench.rebalance [--rows 300000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.broker import EmbeddedBroker
from core.kafka import partition_for
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, Worker, wait_for

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "make_gleif_like.py"


def keys_per_partition(path: Path, partitions: int, per: int = 5) -> list[str]:
    with path.open(newline="") as f:
        isins = [row["ISIN"] for row in csv.DictReader(f)]
    out: list[str] = []
    for p in range(partitions):
        out += [i for i in isins if partition_for(i.encode(), partitions) == p][:per]
    return out


def takeover(
    bootstrap: str, server: ListServer, source: str, rows: int, keys: list[str], standby: int, tmp: Path
) -> dict[str, Any]:
    pipe = Pipeline(bootstrap, uuid.uuid4().hex[:8], tmp / f"standby{standby}")
    pipe.tmp.mkdir(parents=True)
    pipe.extra_env["STANDBY_REPLICAS"] = str(standby)
    try:
        w1, w2 = pipe.worker("w1").start(), pipe.worker("w2").start()
        w1.wait_healthy(120)
        w2.wait_healthy(120)
        assert pipe.produce(source, "--source-name", "bench").returncode == 0
        pipe.wait_processed(rows, markers=pipe.partitions, timeout=600)

        def warm(w: Worker) -> bool:
            status, body = w.get("/healthz")
            return status == 200 and bool(body.get("partitions"))

        wait_for("both workers to own partitions", lambda: warm(w1) and warm(w2), 120)
        time.sleep(3)  # let standbys catch up with the last writes
        w1.kill()
        started = time.monotonic()
        wait_for(
            "the survivor to answer every key",
            lambda: all(w2.get(f"/isins/{k}", timeout=30)[0] == 200 for k in keys),
            timeout=600,
            interval=0.2,
        )
        return {"standby_replicas": standby, "takeover_s": round(time.monotonic() - started, 2)}
    finally:
        pipe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rebalance.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="isin-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "day1.csv"
        subprocess.run(
            [sys.executable, str(TOOL), "--rows", str(args.rows), "--out", str(data)], check=True, capture_output=True
        )
        server = ListServer(tmp)
        server.add_file("day1.csv", data)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None if bootstrap else EmbeddedBroker(log_path=tmp / "broker.log")
        try:
            if broker is not None:
                bootstrap = broker.start()
            assert bootstrap is not None
            keys = keys_per_partition(data, 6)
            runs = [takeover(bootstrap, server, server.url("/files/day1.csv"), args.rows, keys, s, tmp) for s in (1, 0)]
        finally:
            if broker is not None:
                broker.stop()
            server.close()
    with_standby, without = runs
    result = {
        "rows": args.rows,
        "with_standby": with_standby,
        "without_standby": without,
        "ratio_with_to_without": round(with_standby["takeover_s"] / without["takeover_s"], 3),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
