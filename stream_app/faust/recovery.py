"""What Faust's table recovery knows: whether the tables are recovered (``table_ready``), whether a
partition is a standby of this worker, how far its copy has applied the changelog, and telling
recovery about a batch applied outside it."""

from __future__ import annotations

from typing import Any

from faust.types import TP


def table_ready(app: Any) -> bool:
    """Whether this worker serves its tables: Faust's recovery has completed and no rebalance is
    under way (``/healthz``, ``/stats``' ``ready``, and the epoch of the table's key counts).

    Relies on: Faust's Recovery (``app.tables.recovery``) setting its ``completed`` event when it
    resumes the streams after the first recovery (it never clears it: a later rebalance, and the
    recovery that follows, show in the public ``app.rebalancing`` instead).
    """
    return bool(app.tables.recovery.completed.is_set()) and not app.rebalancing


def standby_progress(app: Any, tp: TP) -> tuple[bool, int | None]:
    """(whether ``tp`` is a standby partition of this worker, the last changelog offset applied).

    Relies on: Faust's Recovery keeping ``standby_tps`` (the standby changelog partitions) and
    ``standby_offsets`` (the last offset applied to each, which its rebalance seeks from and its
    progress counts against).
    """
    recovery = app.tables.recovery
    if tp not in recovery.standby_tps:
        return False, None
    seen = recovery.standby_offsets.get(tp)
    return True, None if seen is None or seen < 0 else int(seen)


def standby_partitions(app: Any) -> set[int]:
    """The partitions of which this worker keeps a standby copy (of any table's changelog).

    Relies on: Faust's Recovery having filled ``standby_tps`` for the new assignment before the
    app's ``on_partitions_assigned`` signal is sent (``App._on_partitions_assigned`` awaits
    ``tables.on_rebalance`` first).
    """
    return {tp.partition for tp in app.tables.recovery.standby_tps}


def standby_caught_up(app: Any, tp: TP) -> bool:
    """Whether this worker keeps a standby copy of ``tp`` that has applied every record up to the
    high watermark of its latest fetch of ``tp`` (so behind the owner by at most what was written
    since that fetch: one fetch wait, when the topic is quiet).

    Relies on: ``standby_progress`` above, and Faust's ``Consumer.highwater(tp)`` (aiokafka's
    high watermark from the last fetch response, None before the first).
    """
    is_standby, applied = standby_progress(app, tp)
    if not is_standby:
        return False
    high = app.consumer.highwater(tp)
    if high is None:
        return False
    return high <= 0 or (applied is not None and applied >= high - 1)


def standby_applied(app: Any, tp: TP, offset: int) -> None:
    """Tell Faust's Recovery that the standby copy of ``tp`` holds the changelog up to ``offset``."""
    app.tables.recovery.standby_offsets[tp] = offset
