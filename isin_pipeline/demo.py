"""``isin-pipeline demo``: the whole pipeline once, on the embedded broker, in about half a minute.

1. start the embedded broker on a free loopback port;
2. start a stream worker (a subprocess, as in production);
3. serve the bundled real ISIN list (NSDL, gzip) from a loopback HTTP server;
4. run one produce: download, validate, publish;
5. wait until the table has caught up, then show the summary, the count and a few records;
6. stop everything (or, with --keep-running, wait for Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from core.broker import EmbeddedBroker, free_port, terminate
from core.errors import PipelineError
from core.waiting import wait_for
from isin_pipeline.topics import create_all

logger = logging.getLogger(__name__)

DEMO_LIST = "nsdl_india-isin_ISIN_20240831.csv.gz"
READY_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 120.0


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)


def serve_directory(directory: Path) -> ThreadingHTTPServer:
    """A static file server on 127.0.0.1, on a free port, in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, name="demo-http", daemon=True).start()
    return server


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_healthy(api: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()

    def healthy() -> bool:
        if proc.poll() is not None:
            raise PipelineError(f"the stream worker exited with code {proc.returncode} while starting")
        try:
            return get_json(f"{api}/healthz", timeout=2)[0] == 200
        except (OSError, ValueError):
            return False

    wait_for("the stream worker to be healthy", healthy, timeout, interval=0.2, error=PipelineError)
    return time.monotonic() - started


def wait_caught_up(api: str, published: int, partitions: int, timeout: float) -> dict[str, Any]:
    """Until every published event and every end-of-run marker was processed."""

    def caught_up() -> dict[str, Any] | None:
        status, stats = get_json(f"{api}/stats")
        if status == 200 and stats.get("complete"):
            events = sum(w["dedup"]["events"] for w in stats["workers"])
            markers = sum(w["dedup"]["markers"] for w in stats["workers"])
            if events >= published and markers >= partitions:
                return dict(stats)
        return None

    return dict(wait_for("the table to catch up", caught_up, timeout, interval=0.2, error=PipelineError))


def run_demo(keep_running: bool = False, web_port: int = 0, log_level: str = "INFO") -> int:
    console = Console()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="isin-demo-")))
        console.print("[bold]1.[/] starting the embedded Kafka-compatible broker (tansu)")
        broker = stack.enter_context(EmbeddedBroker(log_path=tmp / "broker.log"))
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
        env.pop("SCHEMA_REGISTRY_URL", None)
        create_all(broker.bootstrap)

        data_dir = tmp / "www"
        data_dir.mkdir()
        (data_dir / DEMO_LIST).write_bytes(resources.files("isin_pipeline").joinpath("data", DEMO_LIST).read_bytes())
        server = serve_directory(data_dir)
        stack.callback(server.shutdown)
        source = f"http://127.0.0.1:{server.server_address[1]}/{DEMO_LIST}"

        port = web_port or free_port()
        api = f"http://127.0.0.1:{port}"
        console.print(f"[bold]2.[/] starting a stream worker, HTTP API on {api}")
        worker_log = open(tmp / "stream.log", "wb")  # noqa: SIM115 - closed by the stack
        stack.callback(worker_log.close)
        worker = subprocess.Popen(  # noqa: S603 - our own entry point
            [
                sys.executable,
                "-m",
                "isin_pipeline.cli",
                "--log-level",
                log_level,
                "stream",
                "--web-port",
                str(port),
                "--state-dir",
                str(tmp / "state"),
            ],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        stack.callback(_stop, worker)
        try:
            took = wait_healthy(api, worker, READY_TIMEOUT_S)
            console.print(f"   healthy after {took:.1f}s")

            console.print(f"[bold]3.[/] producing {DEMO_LIST} (a real list, served from {source})")
            produce = subprocess.run(  # noqa: S603 - our own entry point
                [sys.executable, "-m", "isin_pipeline.cli", "--log-level", "WARNING", "produce", "--source", source],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if produce.returncode != 0:
                raise PipelineError(f"produce failed: {produce.stderr.strip().splitlines()[-1:]}")
            summary = json.loads(produce.stdout)
            console.print_json(data=summary)

            console.print("[bold]4.[/] waiting for the table to catch up")
            started = time.monotonic()
            stats = wait_caught_up(api, summary["published"], summary["partitions"], CATCH_UP_TIMEOUT_S)
            console.print(
                f"   caught up in {time.monotonic() - started:.1f}s: [bold]{stats['isins']}[/] ISINs in the table "
                f"({summary['valid']} valid rows published)"
            )
            _show_records(console, api, stats)
        except PipelineError as exc:
            console.print(f"[red]demo failed:[/] {exc}; the worker's log follows")
            worker_log.flush()
            sys.stderr.write((tmp / "stream.log").read_text(errors="replace")[-4000:])
            return 1
        if keep_running:
            console.print(
                f"\nEverything is up. Try:\n  curl {api}/stats\n  curl '{api}/isins?prefix=INE00&limit=5'\n"
                f"  KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap} isin-pipeline produce --source {source}\n"
                "Ctrl-C stops it all."
            )
            _wait_for_interrupt(worker)
        console.print("[bold]5.[/] stopping the worker, the HTTP server and the broker")
    return 0


def _show_records(console: Console, api: str, stats: dict[str, Any]) -> None:
    status, page = get_json(f"{api}/isins?prefix=INE0&limit=3")
    table = Table(title="a few current records (GET /isins/{isin})")
    for column in ("ISIN", "issuer", "type", "status", "change"):
        table.add_column(column)
    for item in page.get("items", []) if status == 200 else []:
        code, record = get_json(f"{api}/isins/{item['isin']}")
        if code != 200:
            continue
        attrs = record["listings"][0]["attributes"]
        table.add_row(
            record["isin"], attrs.get("issuer", ""), attrs.get("type", ""), attrs.get("status", ""), record["change"]
        )
    console.print(table)


def _wait_for_interrupt(worker: subprocess.Popen[bytes]) -> None:
    stop = threading.Event()
    old = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and worker.poll() is None:
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    terminate(proc, timeout)
