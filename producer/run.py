"""One producer run: claim the slot, then its steps (``steps.py``), then exactly one final record.

Whatever goes wrong, a run that claimed its slot ends with exactly one final record in the
runs topic (``SUCCEEDED``, ``UNCHANGED``, ``SUSPICIOUS``, ``FAILED`` or ``INTERRUPTED``), and
the command prints exactly one JSON summary: never a ``RUNNING`` claim left behind by an error,
never a bare traceback. A bug is recorded as ``FAILED`` with its type and message. While the
run works, a ``Heartbeat`` renews its claim; a start of a slot whose claim stopped beating
fences the dead run first (``fencing.py``).
"""

from __future__ import annotations

import logging
import time

from core.errors import PipelineError
from producer.context import RunContext, RunPlan, RunSummary, new_run_id
from producer.heartbeat import Heartbeat
from producer.publish import FencedError, RunInterrupted
from producer.runs import RunInfo, RunWriter, claim_lost, now_ms, owner_id
from producer.slots import slot_key
from producer.steps import finish, run_steps

__all__ = ["RunContext", "RunPlan", "RunSummary", "execute", "fence_abandoned", "new_run_id"]

logger = logging.getLogger(__name__)


def fence_abandoned(ctx: RunContext, source: str, only_expired: bool = True) -> list[RunInfo]:
    """The scheduler's fence: ``Claims.fence_abandoned`` of the run context's claims."""
    return ctx.claims.fence_abandoned(source, only_expired)


def execute(ctx: RunContext, plan: RunPlan) -> RunSummary:
    """Run ``plan`` unless its slot is done or claimed. Raises PipelineError if the run failed."""
    started = time.monotonic()
    settings = ctx.settings
    summary = RunSummary(run_id=new_run_id(), source=plan.source, slot=slot_key(plan.slot))
    claims = ctx.claims
    default_ms, heartbeat_ms = claims.timeouts_ms
    if not plan.take_over:
        claims.watch(plan.source, plan.slot)
        claims.fence_abandoned(plan.source)
    runs = ctx.runs.refresh()
    done = runs.done_run(plan.source, plan.slot)
    if done is not None:
        return _skip(summary, f"slot {summary.slot} is done: {done.status.lower()} by run {done.run_id}")
    now = now_ms()
    live = claims.live(plan.source, plan.slot)
    if not plan.take_over and live:
        return _skip(summary, f"slot {summary.slot} is being run by {live[0].owner} (run {live[0].run_id})")

    me = RunInfo(
        plan.source,
        summary.slot,
        summary.run_id,
        "RUNNING",
        started_at=now,
        owner=owner_id(),
        deadline_at=now + default_ms,
        heartbeat_at=now,
    )
    me.offset = ctx.writer.write(me)
    if not plan.take_over:
        # Decide on everything recorded before our claim: read through it, though a transaction
        # open before it (a run's last one) holds it back from a committed read for a while.
        if not runs.refresh(through=me.offset).has_read(me.offset):
            logger.warning(
                "run %s: its claim at offset %d of the runs topic is not readable yet (a transaction is "
                "open before it); going on, the slot's transactional id fences any concurrent run",
                summary.run_id,
                me.offset,
            )
        done = runs.done_run(plan.source, plan.slot)
        winner = claim_lost(runs, me, default_ms, now, heartbeat_ms)
        if done is not None:
            summary = _skip(summary, f"slot {summary.slot} is done: {done.status.lower()} by run {done.run_id}")
        elif winner is not None:
            summary = _skip(summary, f"slot {summary.slot} was claimed first by {winner.owner} (run {winner.run_id})")
        if done is not None or winner is not None:
            finish(me, summary, "INTERRUPTED")  # a stood-down claim is closed, not left to expire
            ctx.writer.write(me)
            return summary
    heartbeat = Heartbeat(RunWriter(settings, ctx.serde), me, settings.run_heartbeat_s).start()
    try:
        run_steps(ctx, plan, summary, me, heartbeat.stop)
    except FencedError as exc:
        logger.warning("run %s of %s stood down: %s", summary.run_id, plan.source, exc)
        return _skip(summary, f"another run of slot {summary.slot} took over: {exc}")
    except (PipelineError, Exception, KeyboardInterrupt) as exc:
        error = exc if isinstance(exc, PipelineError) else _internal(exc)
        summary.status = "interrupted" if isinstance(exc, RunInterrupted | KeyboardInterrupt) else "failed"
        summary.reason = str(error)
        error.summary = summary
        heartbeat.stop()
        finish(me, summary, summary.status.upper())
        try:
            ctx.writer.write(me)
        except Exception as write_exc:
            logger.error("could not record run %s as %s: %s", me.run_id, me.status, write_exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        heartbeat.stop()
        summary.duration_s = round(time.monotonic() - started, 3)
        if summary.duration_s > 0:
            summary.rows_per_s = round(summary.rows / summary.duration_s, 1)
        logger.info(
            "run %s of %s for slot %s: %s, %d rows, %d valid (%d distinct), %d invalid, %d unreadable, %.1fs",
            summary.run_id,
            summary.source,
            summary.slot,
            summary.status,
            summary.rows,
            summary.valid,
            summary.distinct,
            summary.invalid,
            summary.unreadable,
            summary.duration_s,
        )
    return summary


def _internal(exc: BaseException) -> PipelineError:
    if isinstance(exc, KeyboardInterrupt):
        return RunInterrupted("interrupted")
    logger.exception("run failed on an internal error")
    return PipelineError(f"internal error: {type(exc).__name__}: {exc}")


def _skip(summary: RunSummary, reason: str) -> RunSummary:
    summary.status, summary.reason = "skipped", reason
    logger.info("%s: %s", summary.source, reason)
    return summary
