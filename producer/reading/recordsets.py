"""Record sets of XML and JSON lists: records of one kind that their ancestors tell apart, read
like a workbook's sheets.

An API's XML often holds several tables in one document, MOEX ISS's
``<document><data id="securities"><rows><row …/></rows></data><data id="marketdata">…``: the
records have one path, but an ancestor's *identifying attribute* (``id``, ``name``, ``type``…,
or a name ending in one: ``tableName``, ``data_id``; see ``identifying``) says which set each
belongs to. Records whose ancestors differ in their names at the same depth
(``document/securities/rows/row`` and ``document/marketdata/rows/row``; JSON's
``{"securities": {"data": […]}, "marketdata": {"data": […]}}``) are record sets too: the record
becomes a pattern (``document/*/rows/row``, ``widen``).

Each set gets its own ISIN field by the rule of ``columns.py`` (``choose_field``), on its own
records: the sets that have one are read, the others are skipped and listed with the reason
(``details["record_sets"]``, ``details["skipped_sets"]``). A set that cannot be judged alone
(too few records) but whose records hold a read set's ISIN field with a value is read with that
field (``pooled_with``). An ancestor level with more than ``MAX_SETS`` values in the sample
groups the records (by issuer, by page) rather than setting them apart: it is ignored. A set met
only beyond the sample is judged on its first records, held back meanwhile (``SAMPLE_RECORDS``,
``SAMPLE_BYTES``); one that holds its ISINs in a field no set of the sample uses fails the run
(unless ``--column`` chose the field), because the ISIN column's identity, compared with the
last run's, is fixed when the list is opened.

The identity has one name per distinct ISIN field: the plain record path of the sets read with
it (``*`` where their ancestors' names differ) and the field, without identifying attributes, so
that it depends neither on which sets the sample saw nor on an export's id.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from core.errors import ParseError
from producer.reading.model import ColumnBy, ColumnChoice, Item, shorten
from producer.reading.records import Ambiguous, FieldSample, Pairs

logger = logging.getLogger(__name__)

MAX_SETS = 32
"""Distinct values an ancestor level may take in the sample and still name record sets."""
SAMPLE_RECORDS = 2000
SAMPLE_BYTES = 2 * 1024 * 1024
MAX_LISTED = 50
"""Record sets listed in the details, of those read and of those skipped; the rest are counted."""
IDENTIFYING = ("id", "name", "type", "kind", "key", "code", "class", "category", "label", "title", "table", "sheet")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

SetKey = tuple[str, ...]
"""Per step of the record's path: the step that tells its set apart (``data[@id='securities']``,
``securities`` where the pattern has ``*``), or ""."""
R = TypeVar("R")


def identifying(attributes: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The attribute that names an element's record set, as (local name, value): the first of
    ``IDENTIFYING`` by its name, or else by the last word of its name (``tableName``, ``data_id``)."""
    best: tuple[int, str, str] | None = None
    for name, value in attributes:
        local = name.rpartition("}")[2]
        words = _WORDS.findall(local)
        last = words[-1].lower() if words else ""
        if last in IDENTIFYING and value.strip():
            rank = IDENTIFYING.index(last) * 2 + (len(words) > 1)
            if best is None or rank < best[0]:
                best = (rank, local, value.strip())
    return (best[1], best[2]) if best else None


def set_step(name: str, attribute: tuple[str, str] | None) -> str:
    """An ancestor's step in a set's key: ``data[@id='securities']``, or its name alone."""
    if attribute is None:
        return name
    value = shorten(attribute[1], 80)
    quote = "'" if "'" not in value else '"'
    return f"{name}[@{attribute[0]}={quote}{value}{quote}]"


def widen(record: str, paths: Iterable[str], sep: str, fixed: Callable[[str], bool] = lambda s: False) -> str:
    """The record's path as a pattern over its siblings, the other paths as deep as it that end
    in its last step and differ from it only in the names of ancestors below the first (not in
    ``fixed`` steps: JSON's array items): ``*`` where they differ."""
    steps = record.split(sep)
    wild = [False] * len(steps)
    for path in paths:
        other = path.split(sep)
        if len(other) != len(steps) or other[-1] != steps[-1] or other == steps:
            continue
        differ = [i for i, (a, b) in enumerate(zip(steps, other, strict=True)) if a != b]
        if not any(fixed(steps[i]) or fixed(other[i]) for i in differ):
            for i in differ:
                wild[i] = True
    return sep.join("*" if w else s for s, w in zip(steps, wild, strict=True))


@dataclass
class RecordSet:
    """Records of one set: its ISIN field, or why it is skipped; how many records it had."""

    key: SetKey
    name: str
    """What tells it apart (``data[@id='securities']``, ``securities``); "" for a list's only set."""
    path: str
    """Its records' path, for humans: ``document/data[@id='securities']/rows/row``."""
    steps: tuple[str, ...]
    """Its records' path without identifying attributes, for the identity."""
    plain: str
    """The same, as the format writes paths: for ``--column``."""
    field: str | None = None
    by: ColumnBy | None = None
    reason: str = ""
    pooled_with: str = ""
    records: int = 0


Choose = Callable[[FieldSample, RecordSet], tuple[str, ColumnBy]]
"""The ISIN field of a set's sample: ``choose_field`` with the format's labels and ranks."""
Display = Callable[[Sequence[str]], str]
"""A record path, as steps, for humans (JSON: ``securities.data[*]``)."""
Identity = Callable[[Sequence[str], str], str]
"""The identity of an ISIN field: the record path, as steps (``*`` where sets differ), and the field."""
Shown = Callable[[Sequence[str], str], str]
"""A field of the records at a path (as steps), for humans (JSON: ``tags[*]``)."""


class SetPlan:
    """The record sets of a list, decided on the sample and, for sets met later, while reading."""

    def __init__(
        self,
        pattern: str,
        sep: str,
        choose: Choose,
        display: Display,
        identity: Identity,
        shown: Shown = lambda steps, field: field,
    ) -> None:
        self._pattern = pattern.split(sep)
        self._sep = sep
        self._choose = choose
        self._display = display
        self._identity = identity
        self._shown = shown
        self._sets: dict[SetKey, RecordSet] = {}
        self._values: dict[int, set[str]] = {}
        """Per ancestor level, the steps seen there."""
        self._ignored: set[int] = set()
        self._entries: list[tuple[RecordSet, dict[str, Any]]] = []
        self.details: dict[str, Any] = {}
        self.columns: list[ColumnChoice] = []
        """The ISIN fields' identities: given to ``Detected`` once, updated in place."""

    @property
    def sets(self) -> list[RecordSet]:
        return list(self._sets.values())

    def key(self, full: SetKey) -> SetKey:
        """A record's set, leaving out the ancestor levels that only group records."""
        if not self._ignored:
            return full
        return tuple("" if i in self._ignored else step for i, step in enumerate(full))

    def new_set(self, key: SetKey) -> RecordSet:
        name = [s for s in key if s]
        path = [s or p for s, p in zip(key, self._pattern, strict=True)]
        plain = tuple(s.partition("[@")[0] if s else p for s, p in zip(key, self._pattern, strict=True))
        return RecordSet(key, self._sep.join(name), self._display(path), plain, self._sep.join(plain))

    def decide(self, samples: dict[SetKey, FieldSample]) -> None:
        """Decide the sets of the sample (each record's full key, in document order)."""
        for full in samples:
            self._admit(full)
        merged: dict[SetKey, FieldSample] = {}
        for full, sample in samples.items():
            merged.setdefault(self.key(full), FieldSample()).update(sample)
        errors: list[ParseError] = []
        for key, sample in merged.items():
            rs = self._sets[key] = self.new_set(key)
            try:
                rs.field, rs.by = self._choose(sample, rs)
            except Ambiguous:
                raise
            except ParseError as exc:
                rs.reason = str(exc)
                errors.append(exc)
        if all(rs.field is None for rs in self._sets.values()):
            if len(errors) == 1:
                raise errors[0]
            why = "; ".join(f"{rs.name}: {shorten(rs.reason, 300)}" for rs in self._sets.values())
            raise ParseError(f"no record set has an ISIN field ({len(errors)} sets): {why}")
        for key, sample in merged.items():
            if self._sets[key].field is None:
                self._pool(self._sets[key], sample)
        self._update()

    def _pool(self, rs: RecordSet, sample: FieldSample) -> bool:
        """Read a set that cannot be judged alone with a read set's ISIN field, if its records hold
        that field with a value; else it stays skipped."""
        for other in self._sets.values():
            if other.field is not None and not other.pooled_with and sample.filled[other.field]:
                rs.field, rs.by, rs.pooled_with = other.field, other.by, other.name or other.path
                return True
        return False

    def _update(self) -> None:
        """The identities and the details, from the sets decided so far."""
        read = [rs for rs in self._sets.values() if rs.field is not None]
        fields = list(dict.fromkeys(rs.field for rs in read if rs.field is not None))
        order = list(ColumnBy)
        choices = []
        for field in fields:
            sets = [rs for rs in read if rs.field == field]
            steps = [col[0] if len(set(col)) == 1 else "*" for col in zip(*(rs.steps for rs in sets), strict=True)]
            by = max((rs.by for rs in sets if rs.by is not None), key=order.index)
            choices.append(ColumnChoice(self._identity(steps, field), by))
        self.columns[:] = choices
        self.details["isin_path"] = " | ".join(dict.fromkeys(self._shown(rs.steps, rs.field or "") for rs in read))
        if len(self._sets) > 1:
            self._list()

    def _list(self) -> None:
        self._entries.clear()
        read = [rs for rs in self._sets.values() if rs.field is not None]
        skipped = [rs for rs in self._sets.values() if rs.field is None]
        self.details["record_sets"] = [self._listed(rs) for rs in read[:MAX_LISTED]]
        self.details["skipped_sets"] = [self._listed(rs) for rs in skipped[:MAX_LISTED]]
        hidden = max(0, len(read) - MAX_LISTED) + max(0, len(skipped) - MAX_LISTED)
        if hidden:
            self.details["sets_not_listed"] = hidden

    def _listed(self, rs: RecordSet) -> dict[str, Any]:
        """A set's entry in the details; its ``records`` are counted in when reading ends."""
        out: dict[str, Any] = {"set": rs.name or rs.path, "path": rs.path}
        if rs.field is None:
            out["reason"] = shorten(rs.reason, 400)
        else:
            out["isin_path"] = self._shown(rs.steps, rs.field)
        if rs.pooled_with:
            out["pooled_with"] = rs.pooled_with
        self._entries.append((rs, out))
        return out

    def late(self, rs: RecordSet, sample: FieldSample) -> None:
        """Decide a set met beyond the sample, on its first records. The identities stay as they
        were when the list was opened (the run compares them with the last run's)."""
        try:
            field, by = self._choose(sample, rs)
        except Ambiguous:
            raise
        except ParseError as exc:
            rs.reason = f"{exc} (a set met beyond the part of the list detection looks at)"
            self._pool(rs, sample)
        else:
            known = sorted({s.field for s in self._sets.values() if s.field is not None})
            if field not in known and by is not ColumnBy.CONFIGURED:
                raise ParseError(
                    f"the record set {rs.path}, beyond the part of the list detection looks at, holds its ISINs "
                    f"in {field!r}, not in {' or '.join(map(repr, known))} like the sets before it: choose the "
                    "ISIN field with --column PATH (or the source's 'column' setting)"
                )
            rs.field, rs.by = field, by
        if rs.field is None:
            logger.info("record set %s, met beyond the sample, is skipped: %s", rs.path, rs.reason)
        else:
            logger.info("record set %s, met beyond the sample, is read with ISIN field %s", rs.path, rs.field)
        new_field = rs.field is not None and all(s.field != rs.field for s in self._sets.values())
        self._sets[rs.key] = rs
        listing = "record_sets" if rs.field is not None else "skipped_sets"
        if listing not in self.details:
            self._list()  # a list of one set becomes a list of sets
        elif len(self.details[listing]) < MAX_LISTED:
            self.details[listing].append(self._listed(rs))
        else:
            self.details["sets_not_listed"] = self.details.get("sets_not_listed", 0) + 1
        if new_field and rs.field is not None and rs.by is not None:  # a field --column chose, new in this set
            self.columns.append(ColumnChoice(self._identity(rs.steps, rs.field), rs.by))
            self.details["isin_path"] += f" | {self._shown(rs.steps, rs.field)}"

    def _admit(self, full: SetKey) -> SetKey:
        """A record's set, once its key is counted: a level where more than ``MAX_SETS`` steps are
        seen groups records (by issuer, by page) and is left out of keys from then on."""
        for i, step in enumerate(full):
            if i not in self._ignored:
                seen = self._values.setdefault(i, set())
                seen.add(step)
                if len(seen) > MAX_SETS:
                    self._ignored.add(i)
                    del self._values[i]
        return self.key(full)

    def items(
        self,
        records: Iterable[tuple[SetKey, R]],
        pairs_of: Callable[[R], tuple[Pairs, int]],
        emit: Callable[[RecordSet, R], Item],
    ) -> Iterator[Item]:
        """The items of the records of the sets read, in document order; a set met for the first
        time is held back (``SAMPLE_RECORDS``, ``SAMPLE_BYTES``) until it is decided."""
        pending: _Pending[R] | None = None
        for full, record in records:
            key = self.key(full)
            if key not in self._sets and (pending is None or key != pending.set.key):
                key = self._admit(full)
            if pending is not None and (key != pending.set.key or pending.full()):
                yield from pending.settle(self, emit)
                pending = None
            rs = self._sets.get(key)
            if rs is None:
                pending = pending or _Pending(self.new_set(key))
                pending.add(record, *pairs_of(record))
                continue
            rs.records += 1
            if rs.field is not None:
                yield emit(rs, record)
        if pending is not None:
            yield from pending.settle(self, emit)
        self.counted()

    def counted(self) -> None:
        """After reading: the records of each set listed in the details."""
        for rs, entry in self._entries:
            entry["records"] = rs.records


class _Pending(Generic[R]):
    """The first records of a set met beyond the sample, held until it is decided."""

    def __init__(self, rs: RecordSet) -> None:
        self.set = rs
        self.sample = FieldSample()
        self.records: list[R] = []
        self.size = 0

    def add(self, record: R, pairs: Pairs, size: int) -> None:
        self.records.append(record)
        self.sample.add(pairs)
        self.size += size

    def full(self) -> bool:
        return len(self.records) >= SAMPLE_RECORDS or self.size > SAMPLE_BYTES

    def settle(self, plan: SetPlan, emit: Callable[[RecordSet, R], Item]) -> Iterator[Item]:
        plan.late(self.set, self.sample)
        for record in self.records:
            self.set.records += 1
            if self.set.field is not None:
                yield emit(self.set, record)
        self.records.clear()
