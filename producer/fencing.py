"""Claims on a slot, and fencing the runs that died holding one.

A run's transactional id is scoped to its source and slot (``transactional_id``): initialising
a producer with it aborts whatever transaction an earlier run of the slot left open, and fences
that run if it is still alive. ``Claims`` reads the runs topic as claims: it watches a claim it
has not seen beat yet (``watch``), lists the live ones (``live``), and fences the dead ones
(``fence_abandoned``), recording each ``INTERRUPTED`` with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import KafkaException

from core.kafka import new_producer
from producer.runs import RunInfo, RunLog, RunWriter, now_ms, owner_id
from producer.settings import ProducerSettings
from producer.slots import slot_key

logger = logging.getLogger(__name__)


def transactional_id(source: str, slot: datetime) -> str:
    digest = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"isin-pipeline.{digest}.{slot_key(slot)}"


@dataclass
class Claims:
    """The runs topic seen as claims on slots."""

    settings: ProducerSettings
    runs: RunLog
    writer: RunWriter
    should_stop: Callable[[], str | None] = lambda: None

    @property
    def timeouts_ms(self) -> tuple[int, int]:
        """(a run's upper bound, the silence after which its claim is abandoned), in ms."""
        return int(self.settings.run_timeout_s * 1000), int(self.settings.run_heartbeat_timeout_s * 1000)

    def abandoned(self, claim: RunInfo, now: int) -> bool:
        return claim.abandoned(now, *self.timeouts_ms)

    def live(self, source: str, slot: datetime) -> list[RunInfo]:
        """The slot's RUNNING claims whose runs are alive, in claim order."""
        now = now_ms()
        return [r for r in self.runs.slot_runs(source, slot) if r.status == "RUNNING" and not self.abandoned(r, now)]

    def watch(self, source: str, slot: datetime) -> None:
        """Return once every RUNNING claim of the slot is known alive or dead.

        A claim seen for the first time is watched on this process's own clock: it is alive as
        soon as a new heartbeat arrives, dead (abandoned) after ``RUN_HEARTBEAT_TIMEOUT_S`` of
        silence. So the retry of a killed run starts within that time, and no clocks need agree.
        """
        first = {r.run_id: r.heartbeat_at for r in self.runs.refresh().slot_runs(source, slot) if r.status == "RUNNING"}
        watched = {run_id for run_id, beat in first.items() if beat is not None}
        deadline = time.monotonic() + self.settings.run_heartbeat_timeout_s + self.settings.run_heartbeat_s
        while watched and time.monotonic() < deadline and not self.should_stop():
            for run_id in list(watched):
                run = self.runs.last_of(run_id)
                beating = run is not None and (run.heartbeat_at or 0) > (first[run_id] or 0)
                if run is None or run.status != "RUNNING" or beating or self.abandoned(run, now_ms()):
                    watched.discard(run_id)
            if watched:
                time.sleep(min(0.2, self.settings.run_heartbeat_s / 4))
                self.runs.refresh()

    def fence_abandoned(self, source: str, only_expired: bool = True) -> list[RunInfo]:
        """Abort the transactions of runs that claimed a slot and never finished; record them.

        A run killed mid-way leaves an open transaction; until it is aborted, read_committed
        consumers of its partitions stop at it (on Kafka for up to transaction.timeout.ms).
        ``only_expired``: only claims whose run is dead (a replica that gains a source fences
        all of its earlier owners' claims).
        """
        now = now_ms()
        default_ms, heartbeat_ms = self.timeouts_ms
        claims = [r for r in self.runs.refresh().history(source) if r.status == "RUNNING"]
        dead = [r for r in claims if not only_expired or self.abandoned(r, now)]
        # A slot's runs share one transactional id: fencing a dead claim while another claim of
        # the same slot is alive would abort the live run. The dead one waits for it to end.
        alive_slots = {r.slot for r in claims if r not in dead}
        abandoned = [r for r in dead if r.slot not in alive_slots]
        for claim in abandoned:
            if not self._fence(source, claim):
                continue
            if self.runs.refresh().last_of(claim.run_id) is not claim:
                continue  # it finished while we fenced: its final record stands
            if claim.expired(now, default_ms):
                why = "its deadline passed"
            elif claim.abandoned(now, default_ms, heartbeat_ms):
                why = "its heartbeat stopped"
            else:
                why = "its source was taken over"
            claim.status, claim.finished_at = "INTERRUPTED", now_ms()
            claim.reason = f"abandoned by {claim.owner} ({why}); its transaction was aborted by {owner_id()}"
            self.writer.write(claim)
            logger.warning(
                "run %s of slot %s was abandoned by %s (%s): fenced and recorded",
                claim.run_id,
                claim.slot,
                claim.owner,
                why,
            )
        return abandoned

    def _fence(self, source: str, claim: RunInfo) -> bool:
        tid = transactional_id(source, claim.slot_at)
        producer = new_producer(self.settings.producer_config(), **{"transactional.id": tid})
        try:
            producer.init_transactions(30)
            return True
        except KafkaException as exc:
            logger.warning("could not fence the abandoned run %s: %s", claim.run_id, exc.args[0])
            return False
        finally:
            producer.flush(1)
