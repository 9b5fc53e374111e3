"""A run's proof of life: its RUNNING claim, renewed on a timer while the run works.

A run killed mid-way (an OOM kill, a lost node, SIGKILL) stops renewing its claim, and the next
run of the slot sees the silence within ``RUN_HEARTBEAT_TIMEOUT_S``: it fences the dead run and
takes the slot, instead of waiting out ``RUN_TIMEOUT_S``. A live run that is merely slow keeps
beating from its own thread, whatever its main thread is doing (a slow download, a large file).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from types import TracebackType

from producer.runs import RunInfo, RunWriter

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews ``claim`` every ``interval_s`` through its own writer until ``stop()``.

    ``stop()`` returns only once no renewal is in flight, so a final record written after it is
    the last record of the run (the runs log also ignores a RUNNING record after a final one).
    """

    def __init__(self, writer: RunWriter, claim: RunInfo, interval_s: float) -> None:
        self._writer = writer
        self._claim = claim
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{claim.run_id}", daemon=True)
        self.beats = 0
        self.failures = 0

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:  # waits for a renewal in flight
            self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval_s + 35)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval_s):
            with self._lock:
                if self._stopped.is_set():
                    return
                beat = replace(self._claim, heartbeat_at=int(time.time() * 1000))
                try:
                    self._writer.write(beat, timeout=max(5.0, self._interval_s * 2))
                    self.beats += 1
                except Exception as exc:  # a broker hiccup: the next beat may pass; silence fences us
                    self.failures += 1
                    if self.failures == 1 or self.failures % 10 == 0:
                        logger.warning(
                            "run %s: could not renew its claim (%d failures): %s",
                            self._claim.run_id,
                            self.failures,
                            exc,
                        )
