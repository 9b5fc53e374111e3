"""What a run is given (``RunPlan``, ``RunContext``) and what it reports (``RunSummary``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from producer.download import Downloader
from producer.fencing import Claims
from producer.progress import RunProgress
from producer.reading import ReadHints
from producer.runs import RunLog, RunWriter
from producer.safety import SafetyPolicy
from producer.settings import ProducerSettings
from schemas import Serde


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: ``20261122T071500Z-1a2b3c4d``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class RunSummary:
    """What one run did. Printed as one JSON line by ``isin-pipeline produce``."""

    run_id: str
    source: str
    slot: str = ""
    status: str = "running"
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    unreadable: int = 0
    distinct: int = 0
    published: int = 0
    dead_lettered: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    rows_per_s: float = 0.0
    partitions: int = 0
    transactions: int = 0
    """Transactions the run committed: its chunks (``RUN_CHUNK_ROWS``, ``RUN_CHUNK_S``), the last
    holding the markers and the run record. A failed run's committed chunks hold new and changed
    listings only: no markers, so no deletions."""
    longest_transaction_s: float = 0.0
    """How long the longest of them was open, from its begin to its commit acknowledged: what
    must stay under the broker's ``transaction.timeout.ms`` (``RUN_CHUNK_S`` bounds it). Committed
    transactions only: a failed run's open transaction, aborted, is not counted."""
    markers: bool = False
    """End-of-run markers were published: the stream app deletes what the list no longer has."""
    framing: str = ""
    layout: dict[str, Any] = field(default_factory=dict)
    """What the reader detected: format, encoding, sheets, header row, ISIN column and how."""
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    unknown_prefixes: dict[str, int] = field(default_factory=dict)
    """Valid ISINs published whose prefix python-stdnum does not know (``QQ`` …), by prefix."""
    doubts: list[str] = field(default_factory=list)
    """Why a suspicious run published no deletions."""
    kept: int = 0
    """Valid ISINs seen in rows that could not be read: not deleted, whatever the run."""
    shrink: dict[str, Any] | None = None
    """Against the last successful run: distinct ISINs then and now (deletions to expect)."""
    reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)


@dataclass
class RunContext:
    """Everything a run needs, built once by the entry point."""

    settings: ProducerSettings
    downloader: Downloader
    serde: Serde
    runs: RunLog
    writer: RunWriter
    progress: RunProgress | None = None
    should_stop: Callable[[], str | None] = lambda: None

    @property
    def claims(self) -> Claims:
        return Claims(self.settings, self.runs, self.writer, self.should_stop)


@dataclass(frozen=True)
class RunPlan:
    """One run to execute: what, as which source, for which slot, and how to claim the slot."""

    url: str
    source: str
    slot: datetime
    force_publish: bool = False
    """Publish even if the list is unchanged since the last run (no conditional GET, no hash check)."""
    take_over: bool = False
    """The scheduler replica that now runs the source takes over a slot whose claim is not final
    (the replica that ran it left); a one-off ``produce`` stands down for a live claim of another
    process."""
    hints: ReadHints = field(default_factory=ReadHints)
    policy: SafetyPolicy = field(default_factory=SafetyPolicy)
    deadline_s: float | None = None
    """The whole download's deadline (default: the settings' ``http_deadline_s``)."""

    @property
    def allow_shrink(self) -> bool:
        return self.policy.allow_shrink
