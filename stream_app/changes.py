"""What changed in one source's listing of one ISIN: ``ListingChange`` records.

The dedup loop knows, for every record it writes, the record before and after. Each source
whose listing appeared, disappeared or changed its attributes between the two gives one
change (``LISTED``, ``DELISTED`` or ``AMENDED``), dated by the run's slot (valid time) and
by the worker's clock (transaction time). The id is a digest of what the change is about
(ISIN, source, run, op), so a change applied again after a crash, or a fuller version of the
same change (a second row of the same run for the same ISIN), keeps its id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from stream_app.records import epoch_ms

Change = dict[str, Any]


def change_id(isin: str, source: str, run_id: str, op: str) -> str:
    """The same fact, the same id: 32 hex digits of SHA-256."""
    return hashlib.sha256(f"{isin}\x00{source}\x00{run_id}\x00{op}".encode()).hexdigest()[:32]


def _listings(record: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {item["source"]: item for item in record["listings"]} if record else {}


def listing_changes(
    isin: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    run_id: str,
    slot_ms: int,
    recorded_at_ms: int,
) -> list[Change]:
    """The changes from record ``before`` to record ``after`` (None: absent), one per source."""
    old, new = _listings(before), _listings(after)
    out: list[Change] = []
    for source in sorted(old.keys() | new.keys()):
        was, now = old.get(source), new.get(source)
        if was is None and now is not None:
            op, changed = "LISTED", sorted(now["attributes"])
        elif was is not None and now is None:
            op, changed = "DELISTED", sorted(was["attributes"])
        elif was is not None and now is not None:
            a, b = was["attributes"], now["attributes"]
            changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            if not changed:
                continue
            op = "AMENDED"
        else:  # pragma: no cover - a source in neither
            continue
        out.append(
            {
                "change_id": change_id(isin, source, run_id, op),
                "op": op,
                "isin": isin,
                "source": source,
                "run_id": run_id,
                "slot": slot_ms,
                "recorded_at": recorded_at_ms,
                "before": None if was is None else dict(was["attributes"]),
                "after": None if now is None else dict(now["attributes"]),
                "changed": changed,
                "backfilled": False,
            }
        )
    return out


def backfill_changes(record: Mapping[str, Any], recorded_at_ms: int) -> list[Change]:
    """One ``LISTED`` change per listing of a record that predates the change topic, dated at
    the listing's ``first_seen_at`` and marked backfilled (its id does not depend on the time)."""
    out: list[Change] = []
    for listing in record["listings"]:
        first_seen = epoch_ms(listing["first_seen_at"])
        out.append(
            {
                "change_id": change_id(record["isin"], listing["source"], f"backfill@{first_seen}", "LISTED"),
                "op": "LISTED",
                "isin": record["isin"],
                "source": listing["source"],
                "run_id": listing["run_id"],
                "slot": first_seen,
                "recorded_at": recorded_at_ms,
                "before": None,
                "after": dict(listing["attributes"]),
                "changed": sorted(listing["attributes"]),
                "backfilled": True,
            }
        )
    return out
