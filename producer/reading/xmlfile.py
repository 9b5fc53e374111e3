"""XML lists: the record element and the ISIN field found by content, read by lxml in bounded memory.

Detection reads at most ``SAMPLE_BYTES`` of the document, twice:

1. A *survey* counts, per path of local names (namespaces never matter), the elements, and the
   non-empty values of attributes (``…/isin/@value``, ``…/row/@ISIN``) and of leaf elements'
   text (``…/ISIN``, FIRDS' ``…/Id``). A field whose values are mostly valid ISINs is a candidate
   (with ``--column``, the fields the hint names). Its *record* is the highest element below the
   root that occurs at least as often as the element holding the value: N-PORT's
   ``invstOrSec``, not its ``identifiers``. Records of that name at that depth under other
   ancestors are record sets of the same kind (the record becomes a pattern,
   ``document/*/rows/row``); ISINs in a second kind of record is an error.
2. The records of the first ``SAMPLE_BYTES`` (``SAMPLE_RECORDS`` of each set at most) become
   fields named by record-relative paths, grouped into record sets by their ancestors'
   identifying attributes and names (``recordsets.py``: MOEX ISS's ``<data id="securities">``
   and ``<data id="marketdata">``); each set's ISIN field is chosen by the rule of
   ``columns.py`` (``choose_field``, shared with JSON). Sets without one are skipped and listed,
   like a workbook's sheets.

Reading: ``etree.iterparse`` on the record's end tags only; each record is cleared and its
earlier siblings (and its ancestors') deleted, so memory holds one record, not the list. No DTD
is loaded, no entity resolved, no network used; ``huge_tree`` stays off, so a text node over
10 MB, a tree deeper than 256 or an entity bomb is a ParseError, not a lost machine. A leading
UTF-8 BOM and whitespace (N-PORT starts with a newline before ``<?xml``) are skipped on the
stream. Reaching the end without an error proves the root was closed (``end_proven``). A record
set first met beyond the sample is decided on its first records, held back until then.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from lxml import etree

from core.errors import ParseError
from core.isin import RowError, is_isin
from producer.reading.container import Payload
from producer.reading.model import (
    MAX_ROW_BYTES,
    BadRow,
    ColumnBy,
    Item,
    ReadHints,
    normalise_header,
    shorten,
)
from producer.reading.records import FieldSample, Pairs, Stream, choose_field, oversized, pick_record, record_row
from producer.reading.recordsets import (
    SAMPLE_BYTES,
    SAMPLE_RECORDS,
    RecordSet,
    SetKey,
    SetPlan,
    identifying,
    set_step,
    widen,
)

SAFE: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}
_POSITION = re.compile(r", line \d+, column \d+$")

# -- XML ------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _leaf_text(el: Any) -> str | None:
    if not len(el):
        text: str | None = el.text
        return text
    return "".join([el.text or "", *(c.tail or "" for c in el)])  # around comments, entity references


def _free(el: Any) -> None:
    """Drop a processed element and everything before it: memory holds one record at a time."""
    el.clear(keep_tail=True)
    node = el
    while (parent := node.getparent()) is not None:
        while node.getprevious() is not None:
            del parent[0]
        node = parent


def _walk(el: Any, prefix: str, out: Pairs) -> int:
    """Append the leaf values under ``el``; return about how many bytes the subtree serializes to."""
    size = 2 * len(el.tag) + 5
    for name, value in el.items():
        out.append((f"{prefix}@{name.rpartition('}')[2] if name[0] == '{' else name}", value))
        size += len(name) + len(value) + 4
    children = [c for c in el if isinstance(c.tag, str)] if len(el) else None
    if children:
        for child in children:
            size += _walk(child, f"{prefix}{_local(child.tag)}/", out) + len(child.tail or "")
    elif (text := el.text if children is None else _leaf_text(el)) is not None:
        out.append((prefix[:-1] or "text()", text))
        size += len(text)
    return size


def _steps(path: str) -> list[str]:
    return [s.lstrip("@").lower() for s in path.strip().split("/") if s and s != "text()"]


def _rank(hint: str, path: str, record: str = "") -> int:
    """How well ``--column`` names a field: 1 its relative path, 2 a tail of its absolute path,
    3 a tail of the element holding the attribute (``isin`` for ``isin/@value``); 0 not at all."""
    want, rel = _steps(hint), _steps(path)
    full = _steps(record) + rel
    if not want:
        return 0
    if want == rel:
        return 1
    if full[-len(want) :] == want:
        return 2
    owner = full[:-1] if path.rpartition("/")[2].startswith("@") else []
    return 3 if owner[-len(want) :] == want else 0


def _broken(exc: Any, src: Stream, after: str) -> ParseError:
    line, column = exc.position
    message = _POSITION.sub("", str(exc.msg or exc))
    if message == "no element found" and src.count == 0:
        return ParseError("the XML is empty")
    if exc.code == 77 or message == "no element found" or message.startswith("Premature end"):
        message += ": the document ends before its root element is closed (a download cut short?)"
    elif "amplification" in message or "Resource limit" in message:
        message += " (an entity-expansion bomb or an oversized node: not read)"
    return ParseError(f"broken XML at line {line + src.lines}, column {column}{after}: {message}")


def _survey(payload: Payload) -> tuple[Counter[str], Counter[str], Counter[str], str]:
    """Elements, non-empty values and valid ISINs per absolute path in the first ``SAMPLE_BYTES``."""
    elements: Counter[str] = Counter()
    values: Counter[str] = Counter()
    isins: Counter[str] = Counter()
    paths: list[str] = []
    leaf: list[bool] = []
    with Stream(payload.open()) as src:
        try:
            for event, el in etree.iterparse(src, events=("start", "end"), **SAFE):
                if event == "start":
                    if leaf:
                        leaf[-1] = False
                    path = f"{paths[-1]}/{_local(el.tag)}" if paths else _local(el.tag)
                    paths.append(path)
                    leaf.append(True)
                    elements[path] += 1
                    for name, value in el.items():
                        if value.strip():
                            key = f"{path}/@{_local(name)}"
                            values[key] += 1
                            isins[key] += is_isin(value)
                    continue
                path = paths.pop()
                if leaf.pop() and (text := _leaf_text(el)) and text.strip():
                    values[path] += 1
                    isins[path] += is_isin(text)
                _free(el)
                if src.count > SAMPLE_BYTES:
                    break
        except etree.XMLSyntaxError as exc:
            raise _broken(exc, src, "") from None
        looked_at = f"the first {src.count} bytes of the XML ({sum(elements.values())} element(s))"
        return elements, values, isins, looked_at


def _record_of(key: str, elements: Counter[str]) -> str:
    """The highest element below the root that occurs as often as the one holding the value."""
    owner = key.rpartition("/@")[0] if "/@" in key else key
    steps = owner.split("/")
    for i in range(2, len(steps) + 1):
        if elements["/".join(steps[:i])] >= elements[owner]:
            return "/".join(steps[:i])
    return owner


def _records(src: Stream, pattern: list[str]) -> Iterator[tuple[Any, SetKey]]:
    """The record elements (at the record's path or pattern, whatever their namespaces), each
    with its set's key, and freed after use."""
    last = len(pattern) - 1
    cache: list[tuple[Any, str]] = [(None, "")] * len(pattern)  # the ancestor met last per level
    for _event, el in etree.iterparse(src, events=("end",), tag=f"{{*}}{pattern[-1]}", **SAFE):
        node = el.getparent()
        key = [""] * len(pattern)
        for i in range(last - 1, -1, -1):
            if node is None:
                break
            name = _local(node.tag)
            if pattern[i] != "*" and pattern[i] != name:
                break
            if i:
                seen, step = cache[i]
                if seen is not node:
                    ident = identifying(node.items())
                    step = set_step(name, ident) if ident or pattern[i] == "*" else ""
                    cache[i] = (node, step)
                key[i] = step
            node = node.getparent()
        else:
            if node is None:
                yield el, tuple(key)
                _free(el)


def _trimmed(pairs: Pairs) -> Pairs:
    """An oversized record's fields, cut down to what its dead letter shows, while it waits."""
    return [(p, shorten(v, 200)) for p, v in pairs[:2000]]


_Record = tuple[int, Pairs, int, bool]
"""(line, fields, about its size, over the size limit)."""


class XmlReader:
    format = "xml"

    def __init__(self, payload: Payload, pattern: list[str], plan: SetPlan) -> None:
        self._payload = payload
        self._pattern = pattern
        self._plan = plan
        self._name = pattern[-1]
        self._names = {"text()": normalise_header(self._name, 0)}
        self.details: dict[str, Any] = plan.details
        self.columns = plan.columns
        self.end_proven = False
        self.unterminated = False

    def _emit(self, rs: RecordSet, record: _Record) -> Item:
        line, pairs, _size, big = record
        assert rs.field is not None
        where = f"{self._name} {rs.records} of {rs.name}" if rs.name else f"{self._name} {rs.records}"
        if big:
            reason = f"the record is over {MAX_ROW_BYTES} bytes"
            return BadRow(line, oversized(pairs, rs.field), RowError.MALFORMED_ROW, reason, where)
        return record_row(line, pairs, rs.field, where, self._names)

    def rows(self) -> Iterator[Item]:
        n = 0
        with Stream(self._payload.open()) as src:

            def records() -> Iterator[tuple[SetKey, _Record]]:
                nonlocal n
                for el, key in _records(src, self._pattern):
                    n += 1
                    pairs: Pairs = []
                    size = _walk(el, "", pairs)
                    big = size > MAX_ROW_BYTES // 2 and len(etree.tostring(el)) > MAX_ROW_BYTES
                    yield key, ((el.sourceline or 0) + src.lines, _trimmed(pairs) if big else pairs, size, big)

            try:
                yield from self._plan.items(records(), lambda r: (r[1], r[2]), self._emit)
            except etree.XMLSyntaxError as exc:
                raise _broken(exc, src, f", after {self._name} {n}") from None
        self.details["records"] = sum(rs.records for rs in self._plan.sets if rs.field is not None)
        self.end_proven = True


def open_xml(payload: Payload, hints: ReadHints) -> XmlReader:
    """Detect the record, its sets and their ISIN fields (see the module's docstring)."""
    elements, values, isins, looked_at = _survey(payload)

    def record_of(key: str) -> str:
        return widen(_record_of(key, elements), elements, "/")

    record = pick_record(isins, values, hints.column, _rank, record_of, lambda key: key, looked_at)
    pattern = record.split("/")
    samples: dict[SetKey, FieldSample] = {}
    with Stream(payload.open()) as src:
        try:
            for el, key in _records(src, pattern):
                sample = samples.setdefault(key, FieldSample())
                if sample.records < SAMPLE_RECORDS:
                    pairs: Pairs = []
                    _walk(el, "", pairs)
                    sample.add(pairs)
                elif len(samples) == 1 and not any(key):
                    break  # no sign of record sets: the sample is complete
                if src.count > SAMPLE_BYTES:
                    break
        except etree.XMLSyntaxError as exc:
            raise _broken(exc, src, "") from None
    name = pattern[-1]

    def choose(sample: FieldSample, rs: RecordSet) -> tuple[str, ColumnBy]:
        return choose_field(
            sample,
            hints.column,
            f"of {rs.path}",
            lambda p: name if p == "text()" else p,
            lambda hint, p: _rank(hint, p, rs.plain),
        )

    plan = SetPlan(record, "/", choose, "/".join, lambda steps, field: "/".join([*steps, field]))
    plan.details["record"] = record
    plan.decide(samples or {("",) * len(pattern): FieldSample()})
    return XmlReader(payload, pattern, plan)
