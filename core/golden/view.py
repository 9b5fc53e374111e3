"""The golden record of one ISIN: the best value of each field across its sources' listings.

A record holds one listing per source, each with the list's own attributes. ``golden_view``
maps every listing's attributes to the canonical fields (``canonical_fields``), adds the CUSIP or
SEDOL inside the ISIN as the source ``"derived"``, and then, per field:

- ``golden``: the value of the source the configuration ranks first (``GoldenConfig.rank``);
- ``identifiers`` (cusip, sedol, lei, figi): that value and every source that gave it too;
- ``conflicts``: every source's value, when two of them differ by ``normalise``.

It runs once per changed record in the stream worker, so the per-record work is dict lookups:
which attribute means which field is worked out once per (source, attribute names) and kept in
the configuration's memo; only attributes no name maps have their values recognised by content.
Nothing here knows Kafka: the worker, a rebuild and the tests call the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from core.golden.config import DERIVED, GoldenConfig
from core.golden.identifiers import clean, derived_identifiers, normalise, recognise
from core.golden.vocabulary import FIELDS, IDENTIFIER_FIELDS, LOOKUP_FIELDS, field_for

MAX_PLANS = 4096
"""Attribute plans kept per configuration: one per (source, attribute names) seen; a list's rows
share a handful (its empty cells vary), so this bounds memory only against odd inputs."""


class GoldenValue(TypedDict):
    value: str
    source: str


class IdentifierValue(TypedDict):
    value: str
    sources: list[str]


class Conflict(TypedDict):
    field: str
    values: dict[str, str]
    """source -> its cleaned value, best-ranked source first."""


@dataclass(frozen=True, slots=True)
class GoldenView:
    """An ISIN's golden record, each member shaped as its Avro/JSON form."""

    golden: dict[str, GoldenValue]
    identifiers: dict[str, IdentifierValue]
    conflicts: list[Conflict]

    def as_dict(self) -> dict[str, Any]:
        return {"golden": self.golden, "identifiers": self.identifiers, "conflicts": self.conflicts}


@dataclass(frozen=True, slots=True)
class _Plan:
    mapped: tuple[tuple[str, str], ...]
    """(attribute, field), best first: the source's configured columns, then names that mean a
    field, in attribute order (so of two attributes meaning one field, the first is used)."""
    unmapped: tuple[str, ...]
    """Attributes no name maps: their values are recognised by content."""


def _plan(source: str, names: tuple[str, ...], config: GoldenConfig) -> _Plan:
    memo = config.memo
    key = (source, names)
    plan: _Plan | None = memo.get(key)
    if plan is not None:
        return plan
    present = set(names)
    mapped = [(attr, fld) for attr, fld in config.overrides(source) if attr in present]
    claimed = {attr for attr, _ in mapped}
    unmapped = []
    for attr in names:
        if attr in claimed:
            continue
        fld = field_for(attr)
        if fld is None:
            unmapped.append(attr)
        else:
            mapped.append((attr, fld))
    plan = _Plan(tuple(mapped), tuple(unmapped))
    if len(memo) >= MAX_PLANS:
        memo.clear()
    memo[key] = plan
    return plan


def mapped_attributes(source: str, names: Sequence[str], config: GoldenConfig) -> dict[str, str]:
    """Which attribute means which field by its name (or the source's configuration), before
    values are looked at: attribute -> field. For a human checking a source's mapping."""
    return dict(_plan(source, tuple(names), config).mapped)


def canonical_fields(source: str, attributes: Mapping[str, str], config: GoldenConfig) -> dict[str, str]:
    """One listing's canonical fields: field -> cleaned value.

    The source's configured columns first, then attribute names that mean a field
    (``field_for``), then, for attributes no name maps, values that are an identifier by their
    own check rule (``recognise``). Of two attributes meaning one field, the first in attribute
    order wins; a value ``clean`` rejects (an LEI column holding ``N/A``) is skipped, so the
    next attribute meaning that field may give it.
    """
    plan = _plan(source, tuple(attributes), config)
    out: dict[str, str] = {}
    for attr, fld in plan.mapped:
        if fld not in out:
            value = clean(fld, attributes[attr])
            if value is not None:
                out[fld] = value
    for attr in plan.unmapped:
        raw = attributes[attr].strip()
        found = recognise(raw)
        if found is not None and found not in out:
            value = clean(found, raw)
            if value is not None:
                out[found] = value
    return out


def _per_source(
    isin: str, listings: Sequence[Mapping[str, Any]], config: GoldenConfig
) -> list[tuple[str, Mapping[str, str]]]:
    """Each source's canonical fields, ``derived`` first; a source's second listing is ignored.
    A listing that carries its ``fields`` already (computed under ``config`` by the caller, as
    the stream worker's ``Golden.apply`` does) is not computed again."""
    found: list[tuple[str, Mapping[str, str]]] = []
    derived = derived_identifiers(isin)
    if derived:
        found.append((DERIVED, derived))
    seen = set()
    for listing in listings:
        source: str = listing["source"]
        if source not in seen:
            seen.add(source)
            given = listing.get("fields")
            fields = given if given is not None else canonical_fields(source, listing["attributes"], config)
            found.append((source, fields))
    return found


def golden_view(isin: str, listings: Sequence[Mapping[str, Any]], config: GoldenConfig) -> GoldenView:
    """The golden record of ``isin`` from its listings (each with ``source`` and ``attributes``)."""
    by_field: dict[str, list[tuple[str, str]]] = {}
    for source, values in _per_source(isin, listings, config):
        for fld, value in values.items():
            by_field.setdefault(fld, []).append((source, value))
    golden: dict[str, GoldenValue] = {}
    identifiers: dict[str, IdentifierValue] = {}
    conflicts: list[Conflict] = []
    rank = config.rank
    for fld in FIELDS:
        given = by_field.get(fld)
        if given is None:
            continue
        if len(given) == 1:
            source, value = given[0]
            golden[fld] = {"value": value, "source": source}
            if fld in IDENTIFIER_FIELDS:
                identifiers[fld] = {"value": value, "sources": [source]}
            continue
        given.sort(key=lambda sv: rank(fld, sv[0]))
        source, value = given[0]
        golden[fld] = {"value": value, "source": source}
        keys = [normalise(fld, v) for _, v in given]
        if fld in IDENTIFIER_FIELDS:
            same = sorted(s for (s, _), k in zip(given, keys, strict=True) if k == keys[0])
            identifiers[fld] = {"value": value, "sources": same}
        if any(k != keys[0] for k in keys):
            conflicts.append({"field": fld, "values": dict(given)})
    return GoldenView(golden, identifiers, conflicts)


def golden_view_of_one(isin: str, source: str, fields: Mapping[str, str], config: GoldenConfig) -> GoldenView:
    """``golden_view`` of an ISIN that one source lists, with that listing's canonical ``fields``
    (a new ISIN, most of a first day). When the identifiers derived from the ISIN and the
    source's fields share no field, every field has one value and no conflict, so the view is
    read off directly; otherwise, ``golden_view`` decides."""
    derived = derived_identifiers(isin)
    if derived and not derived.keys().isdisjoint(fields):
        return golden_view(isin, [{"source": source, "fields": fields}], config)
    golden: dict[str, GoldenValue] = {}
    identifiers: dict[str, IdentifierValue] = {}
    for fld in FIELDS:  # the order golden_view writes them in
        if fld in fields:
            given, value = source, fields[fld]
        elif fld in derived:
            given, value = DERIVED, derived[fld]
        else:
            continue
        golden[fld] = {"value": value, "source": given}
        if fld in IDENTIFIER_FIELDS:
            identifiers[fld] = {"value": value, "sources": [given]}
    return GoldenView(golden, identifiers, [])


def lookup_keys(isin: str, listings: Sequence[Mapping[str, Any]], config: GoldenConfig) -> set[tuple[str, str]]:
    """Every ``(field, value)`` of LOOKUP_FIELDS that any source (or the ISIN itself) gives: what
    a secondary index keyed by identifier must hold for this ISIN, golden or not."""
    return {
        (fld, value)
        for _, values in _per_source(isin, listings, config)
        for fld, value in values.items()
        if fld in LOOKUP_FIELDS
    }
