"""The runs topic: the producer's memory of every run, read back on start and before each run.

One compacted, one-partition topic. Key: ``<source> @ <slot>``. A run writes ``RUNNING`` when
it starts (its claim), renews it with a heartbeat while it works (``Heartbeat``: the same
record with a later ``heartbeat_at``), then exactly one final record: ``SUCCEEDED``, ``UNCHANGED``,
``SUSPICIOUS``, ``FAILED`` or ``INTERRUPTED`` (asked to stop, so retried at once). A
successful or suspicious run's final record is written in the same Kafka transaction as its
events, so it exists exactly when they do.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.errors import PublishError
from core.kafka import KafkaSettings, new_producer
from core.kafka.errors import kafka_error
from core.kafka.producing import produce
from core.kafka.ranges import Tail
from producer.download import Validators
from producer.slots import parse_slot, slot_key
from schemas import RUN_RECORD, Serde, SerializationError

logger = logging.getLogger(__name__)

_LOCAL = frozenset({"offset", "beat_seen"})
FINAL = frozenset({"SUCCEEDED", "UNCHANGED", "SUSPICIOUS", "FAILED", "INTERRUPTED"})
DONE = frozenset({"SUCCEEDED", "UNCHANGED", "SUSPICIOUS"})


def run_key(source: str, slot: datetime) -> bytes:
    return f"{source} @ {slot_key(slot)}".encode()


def now_ms() -> int:
    """The wall clock in epoch milliseconds, as run records and events carry time."""
    return int(time.time() * 1000)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


@dataclass
class RunInfo:
    """One record of the runs topic, with its position in the log."""

    source: str
    slot: str
    run_id: str
    status: str
    started_at: int
    owner: str
    finished_at: int | None = None
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    published: int = 0
    bytes: int = 0
    url_sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_sha256: str | None = None
    reason: str | None = None
    distinct: int = 0
    unreadable: int = 0
    isin_column: str | None = None
    column_by: str | None = None
    layout: str | None = None
    doubts: list[str] = field(default_factory=list)
    deadline_at: int | None = None
    heartbeat_at: int | None = None
    offset: int = field(default=-1, compare=False)
    beat_seen: float = field(default=0.0, compare=False)
    """When this process saw ``heartbeat_at`` last change (its own monotonic clock): silence is
    measured on the observer's clock, so hosts' clocks need not agree."""

    @classmethod
    def from_record(cls, record: dict[str, Any], offset: int = -1) -> RunInfo:
        values: dict[str, Any] = {k: record.get(k) for k in cls.__dataclass_fields__ if k not in _LOCAL}
        values["started_at"] = _ms(record["started_at"])
        values["finished_at"] = _ms(record.get("finished_at"))
        values["deadline_at"] = _ms(record.get("deadline_at"))
        values["heartbeat_at"] = _ms(record.get("heartbeat_at"))
        values["doubts"] = list(record.get("doubts") or [])
        values["distinct"] = int(record.get("distinct") or 0)
        values["unreadable"] = int(record.get("unreadable") or 0)
        return cls(**values, offset=offset, beat_seen=time.monotonic())

    def to_record(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in _LOCAL}

    def to_json(self) -> dict[str, Any]:
        out = self.to_record()
        for k in ("started_at", "finished_at", "deadline_at", "heartbeat_at"):
            if out[k] is not None:
                out[k] = datetime.fromtimestamp(out[k] / 1000, UTC).isoformat(timespec="milliseconds")
        return out

    def expired(self, now_ms: int, default_timeout_ms: int) -> bool:
        """A claim past its deadline (or, for records without one, ``default_timeout_ms`` old) is
        abandoned: its run died without a final record."""
        deadline = self.deadline_at if self.deadline_at is not None else self.started_at + default_timeout_ms
        return now_ms >= deadline

    def abandoned(self, now_ms: int, default_timeout_ms: int, heartbeat_timeout_ms: int) -> bool:
        """A RUNNING claim whose run is dead: past its deadline, or its heartbeat stopped.

        The heartbeat has stopped when this process has seen no new one for
        ``heartbeat_timeout_ms`` on its own clock, or when the last one is three timeouts old by
        the wall clock (a claim left long ago; the margin absorbs clock skew between hosts). A
        claim without heartbeats (an older version's) is bounded by its deadline alone.
        """
        if self.expired(now_ms, default_timeout_ms):
            return True
        if self.heartbeat_at is None:
            return False
        silent_s = time.monotonic() - self.beat_seen
        return silent_s * 1000 >= heartbeat_timeout_ms or now_ms - self.heartbeat_at >= 3 * heartbeat_timeout_ms

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def slot_at(self) -> datetime:
        return parse_slot(self.slot)


class RunLog:
    """The runs topic in memory, kept current by one long-lived consumer. Not thread-safe.

    ``refresh()`` asks the broker for the end offset and reads up to it: one round trip when
    nothing is new. (On the embedded broker, ListOffsets is right for this topic because
    every record of it is written in a batch of its own.)
    """

    def __init__(self, settings: KafkaSettings, serde: Serde) -> None:
        self._settings = settings
        self._serde = serde
        self._topic = settings.topic_runs
        self._tail = Tail(settings.confluent_config(), settings.topic_runs, f"{settings.kafka_client_id}-runs")
        self.records: list[RunInfo] = []
        self._last_of_run: dict[str, RunInfo] = {}
        self.read_to = 0  # the offset after the last record read

    def refresh(self, timeout: float = 30.0, through: int | None = None) -> RunLog:
        """Read what is new; with ``through``, at least up to that offset (see ``Tail.read``)."""
        try:
            messages = self._tail.read(timeout, self._settings.kafka_connect_timeout_s, through)
        except KafkaException as exc:
            raise kafka_error(exc, self._settings.kafka_bootstrap_servers, f"reading {self._topic}") from exc
        for msg in messages:
            value = msg.value()
            if value is None:
                continue
            try:
                decoded = self._serde.decode(value)
            except SerializationError as exc:
                logger.warning("runs topic offset %s: %s", msg.offset(), exc)
                continue
            if decoded.schema is RUN_RECORD:
                self._add(RunInfo.from_record(decoded.record, msg.offset() or 0))
        if messages:
            self.read_to = max(self.read_to, (messages[-1].offset() or 0) + 1)
        return self

    def has_read(self, offset: int) -> bool:
        """Whether every record up to and including ``offset`` has been read."""
        return self.read_to > offset

    def _add(self, run: RunInfo) -> None:
        """Append ``run``; a heartbeat renews its claim in place (memory stays one record a run
        however long it runs, and the claim keeps its place in the log). A RUNNING record of a
        run that already has a final one (a heartbeat that lost a race) changes nothing."""
        last = self._last_of_run.get(run.run_id)
        if last is not None and run.status == "RUNNING":
            if last.status == "RUNNING" and (run.heartbeat_at or 0) > (last.heartbeat_at or 0):
                last.heartbeat_at, last.beat_seen = run.heartbeat_at, run.beat_seen
            return
        self.records.append(run)
        self._last_of_run[run.run_id] = run

    def close(self) -> None:
        self._tail.close()

    def for_slot(self, source: str, slot: datetime) -> list[RunInfo]:
        key = slot_key(slot)
        return [r for r in self.records if r.source == source and r.slot == key]

    def slot_runs(self, source: str, slot: datetime) -> list[RunInfo]:
        """The last record of each run of the slot, in the order of their claims."""
        return [r for r in self.for_slot(source, slot) if self._last_of_run.get(r.run_id) is r]

    def done_run(self, source: str, slot: datetime) -> RunInfo | None:
        """The run that completed the slot, if one did (whatever was recorded after it)."""
        done = [r for r in self.for_slot(source, slot) if r.done]
        return done[-1] if done else None

    def last_of(self, run_id: str) -> RunInfo | None:
        return self._last_of_run.get(run_id)

    def latest(self, source: str, slot: datetime) -> RunInfo | None:
        runs = self.for_slot(source, slot)
        return runs[-1] if runs else None

    def history(self, source: str | None = None) -> list[RunInfo]:
        """The last record of every run, oldest slot first."""
        last: dict[str, RunInfo] = {}
        for r in self.records:
            if source is None or r.source == source:
                last[r.run_id] = r
        return sorted(last.values(), key=lambda r: (r.slot, r.offset))

    def last_success(self, source: str) -> RunInfo | None:
        ok = [r for r in self.records if r.source == source and r.status == "SUCCEEDED"]
        return max(ok, key=lambda r: (r.slot, r.offset)) if ok else None

    def validators(self, source: str, url_sha256: str) -> Validators | None:
        """What the list was when last published or seen unchanged: its content hash, and its ETag
        and Last-Modified if it was downloaded from the same URL (they belong to a resource)."""
        seen = [r for r in self.records if r.source == source and r.status in ("SUCCEEDED", "UNCHANGED")]
        if not seen:
            return None
        last = max(seen, key=lambda r: (r.slot, r.offset))
        if last.url_sha256 != url_sha256:
            return Validators(sha256=last.content_sha256)
        return Validators(etag=last.etag, last_modified=last.last_modified, sha256=last.content_sha256)

    # -- per-source queries: the scheduler fleet's metrics and ``isin-pipeline runs`` ------------

    def sources(self) -> list[str]:
        """Every source with a run record, sorted."""
        return sorted({r.source for r in self.records})

    def last_run(self, source: str) -> RunInfo | None:
        """The last record of the source's latest run (RUNNING while it runs)."""
        runs = self.history(source)
        return runs[-1] if runs else None

    def last_ok(self, source: str) -> RunInfo | None:
        """The source's last SUCCEEDED or UNCHANGED run: when its list was last known current."""
        ok = [r for r in self.records if r.source == source and r.status in ("SUCCEEDED", "UNCHANGED")]
        return max(ok, key=lambda r: (r.finished_at or r.started_at, r.offset)) if ok else None

    def health(self, source: str) -> tuple[RunInfo | None, RunInfo | None, int]:
        """The source's last final run, its last success, and the ISINs that final run deleted
        (at least: the fall in distinct ISINs since the success before it, if it succeeded)."""
        finals = [r for r in self.history(source) if r.final]
        last = finals[-1] if finals else None
        deleted = 0
        if last is not None and last.status == "SUCCEEDED":
            before = [r for r in finals[:-1] if r.status == "SUCCEEDED"]
            if before:
                deleted = max(0, (before[-1].distinct or before[-1].valid) - (last.distinct or last.valid))
        return last, self.last_ok(source), deleted


class RunWriter:
    """Writes RUNNING, UNCHANGED and FAILED records, outside any run transaction."""

    def __init__(self, settings: KafkaSettings, serde: Serde) -> None:
        self._topic = settings.topic_runs
        self._encode = serde.encoder(settings.topic_runs, RUN_RECORD)
        self._conf = {**settings.confluent_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 0}
        self._producer: Producer | None = None

    def encode(self, run: RunInfo) -> bytes:
        return self._encode(run.to_record())

    @property
    def topic(self) -> str:
        return self._topic

    def write(self, run: RunInfo, timeout: float = 30.0) -> int:
        """Append ``run`` and wait for it; returns its offset."""
        if self._producer is None:
            self._producer = new_producer(self._conf)
        result: dict[str, Any] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            result["err"], result["offset"] = err, msg.offset()

        produce(
            self._producer,
            self._topic,
            self.encode(run),
            run_key(run.source, run.slot_at),
            partition=0,
            on_delivery=on_delivery,
        )
        if self._producer.flush(timeout) or result.get("err") is not None or "offset" not in result:
            raise PublishError(f"cannot write the {run.status} record of run {run.run_id}: {result.get('err')}")
        return int(result["offset"])


def claim_lost(
    log: RunLog, mine: RunInfo, stale_after_ms: int, now_ms: int, heartbeat_timeout_ms: int
) -> RunInfo | None:
    """The earlier live claim on ``mine``'s slot that wins over ours, if any.

    Claims are ordered by the runs topic (one partition): the first RUNNING record of a slot,
    still alive and not followed by a final record, wins; later claimants stand down.
    """
    earlier: Iterable[RunInfo] = (r for r in log.for_slot(mine.source, mine.slot_at) if r.offset < mine.offset)
    finals = {r.run_id for r in log.for_slot(mine.source, mine.slot_at) if r.final}
    for run in earlier:
        alive = not run.abandoned(now_ms, stale_after_ms, heartbeat_timeout_ms)
        if run.status == "RUNNING" and run.run_id not in finals and alive:
            return run
    return None
