"""When a run may publish deletions: only when its read of the list is beyond doubt.

A completed run normally ends with end-of-run markers, and the stream app then removes every
ISIN of the source that the run did not contain. A misread list (a cut download, a renamed
column, a parser that lost its way) would delete valid ISINs, and every downstream service
would act on those tombstones. So a run is ``SUSPICIOUS`` (its new and changed ISINs are
published, no markers, so nothing is deleted, exit code 3) when any doubt below holds.

Always:
- the body may be truncated: it ended only with the connection (no Content-Length, no
  chunked end) and neither its container nor its format proves where it ends; or its last
  line has no line end and does not parse;
- more than ``max_unreadable_fraction`` of its rows could not be read (default 1%).

Against the last successful run of the source, when there is one (there is something to lose):
- the ISIN column is not the one that run used (unless it is configured: a user's choice);
- the ISIN column was found by its values alone, with no header naming it;
- the distinct valid ISINs fell by more than ``max_delete_fraction`` (default 5%), unless a
  shrink is allowed (``--allow-shrink``);
- the share of invalid ISINs rose by more than ``max_invalid_jump`` (default 2 points): a list
  with many blank placeholder rows every day is normal, a sudden jump is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.reading.model import ColumnBy


@dataclass(frozen=True)
class SafetyPolicy:
    max_delete_fraction: float = 0.05
    max_unreadable_fraction: float = 0.01
    max_invalid_jump: float = 0.02
    allow_shrink: bool = False


@dataclass(frozen=True)
class ReadFacts:
    """What this run read, as far as the checks need it."""

    rows: int
    valid: int
    invalid: int
    unreadable: int
    distinct: int
    column: str
    column_by: ColumnBy | None
    framing: str
    end_proven: bool
    last_line_bad: bool
    kept_overflow: bool = False


@dataclass(frozen=True)
class Baseline:
    """The last successful run of the source."""

    run_id: str
    rows: int
    invalid: int
    distinct: int
    column: str | None


def doubts(facts: ReadFacts, baseline: Baseline | None, policy: SafetyPolicy) -> list[str]:
    """Every reason this run's read is not beyond doubt; empty when deletions may be published."""
    found: list[str] = []
    if facts.framing == "close" and not facts.end_proven:
        found.append(
            "the body ended only when the connection closed (no Content-Length, no chunked end) and the "
            "list's format cannot prove where it ends: it may be truncated"
        )
    if facts.last_line_bad:
        found.append("the last line has no line end and does not parse: the file may be truncated")
    if facts.kept_overflow:
        found.append("more unreadable rows with ISINs in them than can be kept from deletion")
    if facts.rows and facts.unreadable / facts.rows > policy.max_unreadable_fraction:
        found.append(
            f"{facts.unreadable} of {facts.rows} rows ({facts.unreadable / facts.rows:.1%}) could not be read, "
            f"more than {policy.max_unreadable_fraction:.1%} (max_unreadable_fraction)"
        )
    if baseline is None:
        return found
    if facts.column_by is not ColumnBy.CONFIGURED and baseline.column and facts.column != baseline.column:
        found.append(
            f"the ISIN column is {facts.column!r}, but the last successful run {baseline.run_id} used "
            f"{baseline.column!r}: configure the column (--column, --isin-at) if the change is real"
        )
    if facts.column_by is ColumnBy.CONTENT:
        found.append(
            f"the ISIN column {facts.column!r} was found by its values alone, no header names it: configure it "
            "(--column or --isin-at, or the source's settings) to allow deletions"
        )
    if baseline.distinct and not policy.allow_shrink:
        floor = baseline.distinct * (1 - policy.max_delete_fraction)
        if facts.distinct < floor:
            lost = baseline.distinct - facts.distinct
            found.append(
                f"{facts.distinct} distinct valid ISINs, {lost} ({lost / baseline.distinct:.1%}) fewer than the "
                f"{baseline.distinct} of the last successful run {baseline.run_id}, more than "
                f"{policy.max_delete_fraction:.0%} (max_delete_fraction): --allow-shrink to accept"
            )
    if facts.rows and baseline.rows:
        now, then = facts.invalid / facts.rows, baseline.invalid / baseline.rows
        if now - then > policy.max_invalid_jump:
            found.append(
                f"{now:.1%} of the rows have an invalid ISIN, against {then:.1%} in the last successful run "
                f"{baseline.run_id}: more than {policy.max_invalid_jump:.0%} points more (max_invalid_jump)"
            )
    return found
