"""Named points where a test can stop a process, to kill it at an exact stage.

``ISIN_PIPELINE_FAILPOINTS=run.before_commit`` (a comma-separated list) makes the process, on
reaching that point, print ``failpoint <name> reached`` on stderr and pause there until it is
killed (at most ``PAUSE_S``, then it goes on). Crash tests use it to SIGKILL a run between two
steps whose order matters; unset, a failpoint costs one dictionary lookup. The idea is gofail's
(etcd) and fail-rs's (TiKV).
"""

from __future__ import annotations

import os
import sys
import time

ENV = "ISIN_PIPELINE_FAILPOINTS"
PAUSE_S = 600.0


def _armed() -> frozenset[str]:
    return frozenset(name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip())


def failpoint(name: str) -> None:
    """Pause here if the failpoint ``name`` is armed (see the module's docstring)."""
    if name not in _armed():
        return
    print(f"failpoint {name} reached", file=sys.stderr, flush=True)
    deadline = time.monotonic() + PAUSE_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
