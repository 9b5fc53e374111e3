"""The pipeline under test: one produce, and stream workers catching up on what it published."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BenchError, wait_for
from core.broker import free_port
from isin_pipeline.demo import get_json


def vm_hwm_kb(pid: int) -> int | None:
    """A running process's peak resident memory (VmHWM) in kB; None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children_of(pid: int) -> list[int]:
    """The pids of a running process's children (of any of its threads)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


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
        children_kb: dict[int, int] = {}  # the range processes (and multiprocessing's tracker)
        while proc.poll() is None:
            peak_kb = max(peak_kb, vm_hwm_kb(proc.pid) or 0)
            for child in children_of(proc.pid):
                children_kb[child] = max(children_kb.get(child, 0), vm_hwm_kb(child) or 0)
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
    summary["children_peak_rss_mb"] = round(max(children_kb.values(), default=0) / 1024, 1)
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

    def peak_rss_mb(self) -> float | None:
        """The worker's peak resident memory so far, while it runs: its VmHWM plus its feed
        process's (the sum of two peaks, so never below the pair's true peak)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        pids = [self.proc.pid]
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            return None
        peaks = [vm_hwm_kb(pid) for pid in pids]
        if peaks[0] is None:
            return None
        return round(sum(kb for kb in peaks if kb is not None) / 1024, 1)

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

    def __init__(self, env: dict[str, str], tmp: Path, count: int, partitions: int) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.members = [Worker(env, tmp / f"state-{i}", tmp / f"worker-{i}.log") for i in range(count)]
        self.partitions = partitions

    @property
    def api(self) -> str:
        return self.members[0].api

    def start(self) -> float:
        """Start every member; returns when the group has settled: every member ready at once,
        owning its share of the partitions. A member that is ready alone, before the others
        joined, would give up partitions in the rebalance that follows, and its queries meanwhile
        answer 503 (rebalancing)."""
        for member in self.members:
            member.launch()
        for member in self.members:
            member.wait_ready()

        def settled() -> bool:
            owned: list[int] = []
            for member in self.members:
                status, body = get_json(f"{member.api}/healthz", timeout=5)
                if status != 200:
                    return False
                owned.extend(body["partitions"])
            return sorted(owned) == list(range(self.partitions))

        wait_for(f"{len(self.members)} worker(s) to share the {self.partitions} partitions", settled, 600, 0.05)
        return time.perf_counter()

    def stats(self) -> dict[str, Any]:
        """The app's /stats (any worker answers for all) with the dedup counters summed."""
        stats = self.members[0].stats()
        if not stats["complete"]:
            return {}
        per_worker = [w["dedup"] for w in stats["workers"]]
        dedup = {k: sum(d[k] for d in per_worker) for k in per_worker[0] if not k.endswith("_at")}
        dedup["first_event_at"] = min((d["first_event_at"] for d in per_worker if d["first_event_at"]), default=0.0)
        dedup["last_event_at"] = max((d["last_event_at"] for d in per_worker), default=0.0)
        return {**stats, "dedup": dedup}

    def peak_rss_mb(self) -> list[float | None]:
        """Each member's peak resident memory so far, in member order (read before ``stop``)."""
        return [member.peak_rss_mb() for member in self.members]

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def create_topics(env: dict[str, str]) -> None:
    """The app's topics, as a user creates them: workers never create one."""
    proc = subprocess.run(
        [sys.executable, "-m", "isin_pipeline", "--log-level", "WARNING", "topics", "create"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"topics create failed: {proc.stderr.strip()[-500:]}")


def catch_up(workers: Workers, events: int, markers: int) -> dict[str, Any]:
    """Start the workers on what is waiting in the raw topic and wait until they have processed it.

    ``eps`` counts from the first event a worker took to the end of the last batch one committed,
    by the workers' own clocks, as the peer is measured (from its first event to its last);
    ``wall_s`` adds the start-up: from ready to caught up."""
    ready_at = workers.start()

    def done() -> dict[str, Any] | None:
        stats = workers.stats()
        d = stats.get("dedup")
        return stats if d and d["events"] >= events and d["markers"] >= markers else None

    # polled 5 times a second: each /stats answer is the worker's main thread's time too
    stats = wait_for(f"{events} events", done, 3600, 0.2)
    caught_up = time.time()
    wall = time.perf_counter() - ready_at
    dedup = stats["dedup"]
    seconds = dedup["last_event_at"] - dedup["first_event_at"]  # the workers' own clocks, not the poll's

    def feeds_caught_up() -> bool:
        # the history and the identifier index each worker reads back from the topics its dedup
        # wrote: the day's work is done when they hold it too (else the next stage pays for it)
        workers_stats = workers.members[0].stats().get("workers") or []
        lags = [lag for w in workers_stats for lag in (w.get("feeds") or {}).values()]
        return bool(lags) and all(lag == 0 for lag in lags)

    wait_for("the history and identifier feeds", feeds_caught_up, 1800, 0.1)
    feeds_s = time.time() - caught_up
    peak_rss = workers.peak_rss_mb()
    workers.stop()
    return {
        "workers_peak_rss_mb": peak_rss,
        "seconds": round(seconds, 3),
        "eps": round(events / seconds),
        "wall_s": round(wall, 3),
        "feeds_s": round(feeds_s, 3),
        "isins": stats["isins"],
        "dedup": dedup,
    }


def end_to_end(env: dict[str, str], workers: Workers, url: str, rows: int, markers: int) -> dict[str, Any]:
    """A day as it runs in production: the workers are up, the producer publishes, the workers
    keep up as it goes. Timed from the start of the download to the table caught up."""
    workers.start()
    try:
        started = time.perf_counter()
        summary = produce(env, url, "--source-name", "gleif-bench")
        if summary["valid"] != rows:
            raise BenchError(f"end to end: {summary['valid']} valid rows, expected {rows}")

        def done() -> dict[str, Any] | None:
            stats = workers.stats()
            d = stats.get("dedup")
            return stats if d and d["new"] >= rows and d["markers"] >= markers else None

        stats = wait_for(f"{rows} new ISINs in the table", done, 3600, 0.2)
        seconds = time.perf_counter() - started
        peak_rss = workers.peak_rss_mb()
    finally:
        workers.stop()
    if stats["isins"] != rows:
        raise BenchError(f"end to end: the table holds {stats['isins']} ISINs, expected {rows}")
    return {
        "seconds": round(seconds, 1),
        "rows_per_s": round(rows / seconds),
        "producer_s": summary["wall_s"],
        "producer_peak_rss_mb": summary["peak_rss_mb"],
        "producer_range_processes_peak_rss_mb": summary["children_peak_rss_mb"],
        "producer_transactions": summary["transactions"],
        "producer_longest_transaction_s": summary["longest_transaction_s"],
        "workers_peak_rss_mb": peak_rss,
        "workers": len(workers.members),
    }
