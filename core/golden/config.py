"""Which source a golden record believes, field by field: read from the sources file.

::

    [sources.nse]                       # file order is the default precedence
    url = "..."
    fields = { name = "NAME OF COMPANY", ticker = "SYMBOL" }   # beats the synonym table

    [sources.gleif]
    url = "..."

    [precedence]                        # per field, where the default order is wrong
    lei = ["gleif", "*"]                # "*": every other source, in file order
    cusip = ["derived", "*"]            # "derived": the CUSIP/SEDOL inside the ISIN

The scheduler owns the rest of the file; ``problems(data)`` checks only these keys, so it can
report them with its own errors, each naming its key. A ``fields`` column is written as the list
shows it (``NAME OF COMPANY``) and matched against the reader's normalised attribute names by
``attribute_name``: a copy of ``producer.reading.model.normalise_header``, since core may not
import the producer (tests/unit/test_golden_real_lists.py keeps the two equal).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.golden.vocabulary import FIELDS

DERIVED = "derived"
"""The pseudo-source of the identifiers inside the ISIN (``identifiers.derived_identifiers``)."""
ANY = "*"
"""In a precedence list: every source the list does not name, in file order."""
DERIVED_FIELDS = ("cusip", "sedol")
"""The fields ``derived`` gives; it ranks first for them unless a precedence list places it."""

Rank = tuple[int, int, str]

_NON_WORD = re.compile(r"[^0-9a-z]+")
_FIELD_LIST = ", ".join(FIELDS)


def attribute_name(header: str, index: int = 0) -> str:
    """A column name as the reader names its attribute: ``" NAME OF COMPANY"`` ->
    ``name_of_company``; an empty name is ``column_<index + 1>``."""
    norm = _NON_WORD.sub("_", header.strip().lower()).strip("_")
    return norm or f"column_{index + 1}"


@dataclass(frozen=True)
class GoldenConfig:
    """The sources in file order, each one's own column names for fields, and per-field
    precedence. Build it once (``load`` or ``from_sources``) and pass it down."""

    order: tuple[str, ...] = ()
    fields: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """source -> {canonical field -> column name as written in the sources file}."""
    precedence: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """field -> source names, best first; ``"*"`` and ``"derived"`` as above."""

    _overrides: dict[str, tuple[tuple[str, str], ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _positions: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)
    _ranks: dict[tuple[str, str], Rank] = field(init=False, repr=False, compare=False, default_factory=dict)
    memo: dict[Any, Any] = field(init=False, repr=False, compare=False, default_factory=dict)
    """A cache ``view.py`` keeps per configuration (the attribute plan of each header set)."""

    def __post_init__(self) -> None:
        self._positions.update((name, i) for i, name in enumerate(self.order))
        for source, columns in self.fields.items():
            self._overrides[source] = tuple((attribute_name(col), fld) for fld, col in columns.items())

    @classmethod
    def from_sources(cls, data: Mapping[str, Any]) -> GoldenConfig:
        """From a parsed sources file (``tomllib``); ConfigError naming every bad key at once."""
        found = problems(data)
        if found:
            raise ConfigError("\n".join(found))
        tables = _tables(data)
        return cls(
            order=tuple(tables),
            fields={name: dict(t["fields"]) for name, t in tables.items() if t.get("fields")},
            precedence={fld: tuple(names) for fld, names in dict(data.get("precedence") or {}).items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> GoldenConfig:
        """From a sources file; ConfigError if it cannot be read or is not valid."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the sources file: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not a valid TOML file: {exc}") from None
        return cls.from_sources(data)

    def overrides(self, source: str) -> tuple[tuple[str, str], ...]:
        """The source's configured ``(attribute name, field)`` pairs, in the order written."""
        return self._overrides.get(source, ())

    def rank(self, fld: str, source: str) -> Rank:
        """Sort key of ``source`` for ``fld``: lower is believed first.

        The position in the field's precedence list if it has one (``"*"`` standing for every
        source of the file it does not name, in file order), else the position in the file.
        Sources not in the file come after all of those, alphabetically. ``derived`` comes
        first for cusip and sedol unless the field's precedence list places it.
        """
        key = (fld, source)
        found = self._ranks.get(key)
        if found is None:
            found = self._rank(fld, source)
            if len(self._ranks) < 65536:
                self._ranks[key] = found
        return found

    def _rank(self, fld: str, source: str) -> Rank:
        listed = self.precedence.get(fld)
        position = self._positions.get(source)
        if listed is not None and source != ANY and source in listed:
            return (listed.index(source), 0, "")
        if source == DERIVED and fld in DERIVED_FIELDS:
            return (-1, 0, "")
        if listed is None:
            return (position, 0, "") if position is not None else (len(self.order), 0, source)
        if position is not None:
            return (listed.index(ANY), position, "") if ANY in listed else (len(listed), position, "")
        return (len(listed) + 1, 0, source)


def _tables(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    sources = data.get("sources")
    if not isinstance(sources, Mapping):
        return {}
    return {name: t for name, t in sources.items() if isinstance(t, Mapping)}


def problems(data: Mapping[str, Any]) -> list[str]:
    """Every problem of a parsed sources file's golden-record keys (``sources.NAME.fields`` and
    ``[precedence]``), each naming its key; empty if there is none. The scheduler reports the
    other keys (a missing ``sources`` table, a source that is not a table)."""
    found: list[str] = []
    tables = _tables(data)
    for name, table in tables.items():
        if name in (DERIVED, ANY):
            found.append(f"sources.{name}: {name!r} is reserved in [precedence]: give the source another name")
        if "fields" in table:
            found += _fields_problems(f"sources.{name}.fields", table["fields"])
    if "precedence" in data:
        found += _precedence_problems(data["precedence"], set(tables))
    return found


def _fields_problems(where: str, columns: Any) -> list[str]:
    if not isinstance(columns, Mapping):
        return [f'{where}: expected a table of field = "column", e.g. {{ name = "NAME OF COMPANY" }}']
    found = []
    for fld, column in columns.items():
        if fld not in FIELDS:
            found.append(f"{where}.{fld}: unknown field; one of {_FIELD_LIST}")
        elif not isinstance(column, str):
            found.append(f"{where}.{fld}: expected the column's name (a string), not {column!r}")
        elif not column.strip():
            found.append(f"{where}.{fld}: empty: give the column's name as the list writes it")
    return found


def _precedence_problems(table: Any, sources: set[str]) -> list[str]:
    if not isinstance(table, Mapping):
        return ['precedence: expected a table, [precedence] with field = ["source", "*"]']
    found = []
    for fld, names in table.items():
        where = f"precedence.{fld}"
        if fld not in FIELDS:
            found.append(f"{where}: unknown field; one of {_FIELD_LIST}")
            continue
        if not isinstance(names, list):
            found.append(f'{where}: expected a list of source names, e.g. ["gleif", "*"], not {names!r}')
            continue
        if not names:
            found.append(f"{where}: empty: name sources, or leave the field out for the file's order")
        seen: set[str] = set()
        for name in names:
            if not isinstance(name, str):
                found.append(f"{where}: {name!r} is not a source name (a string)")
            elif name in seen:
                found.append(f"{where}: {name!r} twice")
            elif name == DERIVED and fld not in DERIVED_FIELDS:
                found.append(f"{where}: {DERIVED!r} gives only {' and '.join(DERIVED_FIELDS)}")
            elif name not in sources and name not in (ANY, DERIVED):
                found.append(f"{where}: {name!r} is not a source of this file")
            if isinstance(name, str):
                seen.add(name)
    return found
