"""A crash soak: several days of a real list through two workers, with SIGKILLs at random moments.

    python -m bench.soak [--days 4] [--seed 1] [--out bench/results/soak.json]

Day 1 is the real NSE list (``../shared/data``); the next days drop, amend and bring back rows
of it, as a publisher's list changes. Each day's ``produce`` may be killed mid-run (then run
again for the same slot), and a worker may be killed mid-batch and restarted (once on an empty
state directory). After each day the compacted topic, ``snapshot --as-of`` of every day so far
and the history of the changed ISINs are compared with the true lists, and the identifier index
with the records' identifiers. Default settings
throughout, the embedded broker, nothing but loopback.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import log, private_env
from core.broker import EmbeddedBroker, free_port
from core.kafka import KafkaSettings
from core.waiting import wait_for
from isin_pipeline.demo import get_json, serve_directory
from ops.client import TopicReader, current_set

NSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nse_EQUITY_L.csv"
Truth = dict[str, dict[str, str]]


def days(count: int, rng: random.Random) -> list[tuple[bytes, Truth]]:
    """The lists of ``count`` days, and what each says: ISIN -> its other columns."""
    rows = list(csv.reader(io.StringIO(NSE.read_text(encoding="utf-8"))))
    header, body = rows[0], [list(r) for r in rows[1:]]
    out = []
    current = [list(r) for r in body]
    for day in range(count):
        if day:
            current = [list(r) for r in current]
            for row in rng.sample(current, 10):
                row[1] = f"{row[1]} (day {day + 1})"
            dropped = set(rng.sample(range(len(current)), 25))
            current = [r for i, r in enumerate(current) if i not in dropped]
            have = {r[6].strip() for r in current}
            current += [list(r) for r in rng.sample([r for r in body if r[6].strip() not in have], 15)]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([header, *current])
        out.append((text.getvalue().encode(), truth(text.getvalue())))
    return out


def true_history(lists: list[Truth]) -> dict[str, list[tuple[str, int]]]:
    """What the change topic must say: per ISIN, (op, day) of every change of its listing."""
    out: dict[str, list[tuple[str, int]]] = {}
    before: Truth = {}
    for day, now in enumerate(lists, start=1):
        for isin in sorted(before.keys() | now.keys()):
            was, is_ = before.get(isin), now.get(isin)
            op = "LISTED" if was is None else "DELISTED" if is_ is None else "AMENDED" if was != is_ else None
            if op:
                out.setdefault(isin, []).append((op, day))
        before = now
    return out


def topic_history(settings: KafkaSettings) -> dict[str, list[tuple[str, int]]]:
    """Per ISIN, (op, day of its slot) of every change in the change topic, one per change id."""
    last: dict[str, dict[str, Any]] = {}
    for item in TopicReader(settings, settings.topic_changes).read():
        if item.record is not None:
            last[item.record["change_id"]] = item.record
    out: dict[str, list[tuple[str, int]]] = {}
    for c in sorted(last.values(), key=lambda c: (c["slot"], c["recorded_at"])):
        out.setdefault(c["isin"], []).append((c["op"], c["slot"].day))
    return out


def index_exact(settings: KafkaSettings) -> bool:
    """Whether the identifier index holds exactly the lookup keys of the table's records, each in
    its identifier's partition."""
    from stream_app.golden import lookup_keys
    from stream_app.identifier_index import index_key, index_partition

    want = {
        (index_partition(f, v, settings.topic_partitions), index_key(f, v, isin).decode())
        for isin, record in current_set(settings).items()
        for f, v in lookup_keys(record)
    }
    latest: dict[tuple[int, str], bool] = {}
    for item in TopicReader(settings, settings.topic_identifiers).read():
        if item.key is not None:
            latest[(item.partition, item.key)] = item.error is not None  # a value (not Avro) or a tombstone
    return {k for k, present in latest.items() if present} == want


def truth(text: str) -> Truth:
    rows = list(csv.reader(io.StringIO(text)))
    names = [h.strip().lower().replace(" ", "_") for h in rows[0]]
    out: Truth = {}
    for row in rows[1:]:
        values = dict(zip(names, (v.strip() for v in row), strict=True))
        isin = values.pop("isin_number")
        out[isin] = {k: v for k, v in values.items() if v}
    return out


class Soak:
    def __init__(self, tmp: Path, bootstrap: str, rng: random.Random) -> None:
        self.tmp, self.rng = tmp, rng
        self.env = private_env(bootstrap, "soak", LOG_LEVEL="INFO")
        self.settings = KafkaSettings(
            kafka_bootstrap_servers=bootstrap,
            topic_raw="soak.events",
            topic_current="soak.current",
            topic_dlq="soak.dlq",
            topic_runs="soak.runs",
            topic_changes="soak.changes",
            topic_identifiers="soak.identifiers",
        )
        self.ports = {name: free_port() for name in ("w1", "w2")}
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: list[str] = []

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "isin_pipeline", *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, name: str) -> None:
        log_file = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the worker's, closed with it
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "isin_pipeline", "stream", "--web-port", str(self.ports[name]),
             "--state-dir", str(self.tmp / f"state-{name}")],
            env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def healthy(self, name: str) -> bool:
        try:
            return get_json(f"http://127.0.0.1:{self.ports[name]}/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def kill_worker(self, wipe: bool) -> None:
        name = self.rng.choice(sorted(self.workers))
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait(30)
        if wipe:
            shutil.rmtree(self.tmp / f"state-{name}", ignore_errors=True)
        self.kills.append(f"worker {name}{' (state wiped)' if wipe else ''}")
        self.start(name)

    def produce(self, url: str, slot: str, kill: bool) -> dict[str, Any]:
        args = ["produce", "--source", url, "--source-name", "nse", "--slot", slot]
        if kill:
            proc = subprocess.Popen(
                [sys.executable, "-m", "isin_pipeline", *args], env=self.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(self.rng.uniform(0.5, 4.0))  # a random moment of the run: that is the point here
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                self.kills.append(f"produce of {slot}")
            proc.wait(30)
        for _ in range(5):
            done = self.cli(*args)
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            if summary["status"] == "succeeded" or "is done" in str(summary.get("reason")):
                return dict(summary)
        raise RuntimeError(f"the run of {slot} did not complete: {summary}")

    def stats(self) -> dict[str, Any]:
        """Each worker's /stats (or why not): what to look at when a day never arrives."""
        out: dict[str, Any] = {}
        for name, port in self.ports.items():
            try:
                out[name] = get_json(f"http://127.0.0.1:{port}/stats", timeout=5)
            except OSError as exc:
                out[name] = repr(exc)
        return out

    def table(self) -> Truth:
        return {
            isin: {item["source"]: item["attributes"] for item in record["listings"]}.get("nse", {})
            for isin, record in current_set(self.settings).items()
        }

    def stop(self) -> None:
        for proc in self.workers.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="isin-soak-"))
    lists = days(args.days, rng)
    broker = EmbeddedBroker(log_path=tmp / "broker.log")
    soak = Soak(tmp, broker.start(), rng)
    server = serve_directory(tmp)
    url = f"http://127.0.0.1:{server.server_address[1]}/list.csv"
    results: list[dict[str, Any]] = []
    try:
        assert soak.cli("topics", "create").returncode == 0
        for name in ("w1", "w2"):
            soak.start(name)
        wait_for("two healthy workers", lambda: all(soak.healthy(n) for n in soak.workers), 120)
        for day, (body, true_list) in enumerate(lists, start=1):
            (tmp / "list.csv").write_bytes(body)
            slot = f"2026-12-{day:02d}T07:00:00Z"
            if rng.random() < 0.6:
                soak.kill_worker(wipe=day == 2)
            summary = soak.produce(url, slot, kill=rng.random() < 0.6)
            try:
                wait_for(f"day {day} in the table", lambda t=true_list: soak.table() == t, 180)  # type: ignore[misc]
            except TimeoutError:
                log(f"day {day} never reached the table; the workers say: {soak.stats()}; logs in {tmp}")
                raise
            checks: dict[str, Any] = {"day": day, "run": summary["status"], "isins": len(true_list)}
            layout = summary.get("layout") or {}
            if "ranges" in layout:  # read in byte ranges (PRODUCER_PARALLEL_MIN_BYTES below the list's size)
                checks["ranges_as_columns"] = f"{layout['ranges_as_columns']} of {layout['ranges']}"
            for past, (_, past_truth) in enumerate(lists[:day], start=1):
                out = tmp / f"as-of-{day}-{past}.jsonl"
                done = soak.cli("snapshot", "--as-of", f"2026-12-{past:02d}T08:00:00Z", "--out", str(out))
                got = {r["isin"]: r["listings"][0]["attributes"] for r in map(json.loads, out.read_text().splitlines())}
                checks[f"as_of_day_{past}_exact"] = done.returncode == 0 and got == past_truth
            checks["index_exact"] = index_exact(soak.settings)
            checks["history_exact"] = topic_history(soak.settings) == true_history([t for _, t in lists[:day]])
            sample = sorted(true_history([t for _, t in lists[:day]]))[::500]
            for isin in sample:  # and the command a person runs, on a few
                shown = soak.cli("history", isin, "--format", "json").stdout.splitlines()
                got_ops = [(c["op"], int(c["slot"][8:10])) for c in map(json.loads, shown)]
                checks["history_exact"] &= got_ops == true_history([t for _, t in lists[:day]])[isin]
            results.append(checks)
            log(f"day {day}: {checks}")
    finally:
        soak.stop()
        server.shutdown()
        broker.stop()
    report = {"days": results, "kills": soak.kills, "seed": args.seed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    exact = all(v for day in results for k, v in day.items() if k.endswith("_exact"))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
