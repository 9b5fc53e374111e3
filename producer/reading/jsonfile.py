"""JSON lists: an array of objects, an API envelope holding one, or JSON Lines, read in bounded memory.

Layouts, told apart by content: a top-level array (``[{…}, …]``, records ``[*]``); an envelope
(GLEIF's ``{"meta": …, "data": [{…}]}``, records ``data[*]``, at any depth); JSON Lines (one
object a line: each line a record); a single object (one record). An array of strings
(``{"isins": ["DE…", …]}``) holds one-field records.

Detection, on at most ``SAMPLE_BYTES``, as for XML (``xmlfile.py``): a survey of ``ijson``
events counts the values at each key path and the valid ISINs among them; a key path whose
values are mostly ISINs is a candidate, and its record is the highest array element above it
that occurs as often as the object holding it (or the top-level value). Then the first
``SAMPLE_RECORDS`` records are flattened into key paths relative to the record
(``attributes.isin``) and the ISIN field is chosen by ``choose_field`` (the rule of ``columns.py``).

Reading: documents stream through ``ijson.parse`` (the yajl2_c backend) and each record is
built as flat key paths, never as a whole tree, so a record over ``MAX_ROW_BYTES`` is cut off and
dead-lettered, and memory holds one record. Nesting deeper than ``MAX_DEPTH`` is an error
(yajl has no limit; small reads keep its cost bounded). A document read to its end without an
error is complete (``end_proven``). JSON Lines are read a line at a time: a line that is not a
JSON object is one dead letter, and a last line without a line end is reported (``unterminated``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ijson

from core.errors import ParseError
from core.isin import RowError, is_isin
from producer.reading.container import Payload
from producer.reading.lines import LineChunks
from producer.reading.model import MAX_ROW_BYTES, BadRow, ColumnChoice, Item, ReadHints, shorten
from producer.reading.records import FieldSample, Pairs, Stream, choose_field, oversized, pick_record, record_row

SAMPLE_BYTES = 2 * 1024 * 1024
SAMPLE_RECORDS = 2000
MAX_DEPTH = 1000
BUFFER = 8192
"""Bytes yajl parses at a time: its events carry key paths as long as the nesting, so a small
buffer bounds the work a hostile nesting costs before ``MAX_DEPTH`` stops it."""
_SCALARS = frozenset(("string", "number", "boolean", "null"))
_STEPS = re.compile(r"\.|\[\*\]")
_DEEP = MAX_DEPTH * 5
"""Key paths longer than this are deeper than ``MAX_DEPTH`` (an array level adds ``.item``)."""


def _text(value: Any) -> str:
    """A scalar as its JSON text: numbers as written (``Decimal``), ``true``, ``false``; null is empty."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(src: Stream) -> Any:
    return ijson.parse(src, buf_size=BUFFER, multiple_values=True)


def _too_deep(src: Stream) -> ParseError:
    return ParseError(f"the JSON is nested deeper than {MAX_DEPTH} levels in its first {src.count} bytes")


def _broken(exc: Exception, src: Stream, after: str) -> ParseError:
    arg = exc.args[0] if exc.args else type(exc).__name__
    lines = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)).splitlines() or [""]
    message = lines[0].rstrip(".")
    if "premature EOF" in message:
        if src.count == 0:
            return ParseError("the JSON is empty")
        message += ": the document ends before it is complete (a download cut short?)"
    elif len(lines) > 1 and lines[1].strip():
        message += f" near {shorten(lines[1].strip(), 60)!r}"
    return ParseError(f"broken JSON in the first {src.count} bytes{after}: {message}")


def _display(prefix: str, arrays: set[str]) -> str:
    """``data.item.attributes.isin`` -> ``data[*].attributes.isin`` (``item`` steps of arrays only)."""
    out, path = "", ""
    for step in prefix.split(".") if prefix else []:
        parent, path = path, f"{path}.{step}" if path else step
        out += "[*]" if step == "item" and parent in arrays else f".{step}" if out else step
    return out


def _rank(hint: str, path: str, record: str = "") -> int:
    """1: ``--column`` is the field's relative key path; 2: a tail of its absolute path; else 0."""
    want = [s.lower() for s in _STEPS.split(hint.strip()) if s and s != "item"]
    rel = [s.lower() for s in path.split(".") if s and s != "item"]
    full = [s.lower() for s in record.split(".") if s and s != "item"] + rel
    if not want:
        return 0
    return 1 if want == rel else 2 if full[-len(want) :] == want else 0


class _Survey:
    """Values and valid ISINs per key path, objects per path and the arrays, in the first bytes."""

    def __init__(self, payload: Payload) -> None:
        self.arrays: set[str] = set()
        self.objects: Counter[str] = Counter()
        self.values: Counter[str] = Counter()
        self.isins: Counter[str] = Counter()
        with Stream(payload.open(), strip=b"") as src:
            try:
                for prefix, event, value in _parse(src):
                    if event == "string":
                        self.values[prefix] += 1
                        self.isins[prefix] += is_isin(value)
                    elif event == "start_map" or event == "start_array":
                        if len(prefix) > _DEEP:
                            raise _too_deep(src)
                        if event == "start_map":
                            self.objects[prefix] += 1
                        else:
                            self.arrays.add(prefix)
                    elif event in _SCALARS:
                        self.values[prefix] += 1
                    if src.count > SAMPLE_BYTES:
                        break
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise _broken(exc, src, "") from None
            self.looked_at = f"the first {src.count} bytes of the JSON"

    def is_item(self, prefix: str) -> bool:
        parent, _, last = prefix.rpartition(".")
        return last == "item" and parent in self.arrays

    def count(self, prefix: str) -> int:
        return self.objects[prefix] + (self.values[prefix] if self.is_item(prefix) else 0)

    def record_of(self, key: str) -> str:
        """The highest array element above ``key`` as frequent as its object; "" the top level."""
        owner = key if self.is_item(key) else key.rpartition(".")[0]
        steps = owner.split(".") if owner else []
        for i in range(1, len(steps) + 1):
            prefix = ".".join(steps[:i])
            if self.is_item(prefix) and self.count(prefix) >= self.count(owner):
                return prefix
        return ""

    def label(self, record: str) -> str:
        return _display(record, self.arrays) or "(top level)"


def _records(src: Stream, record: str, state: dict[str, int], keep: str = "") -> Iterator[tuple[Pairs, int]]:
    """Each record at ``record`` as flat (relative key path, text) pairs and about its size; a
    record over ``MAX_ROW_BYTES`` keeps only its first pairs and ``keep`` (the ISIN field).
    Counts top-level values in ``state``."""
    skip = len(record) + 1 if record else 0
    pairs: Pairs | None = None
    size = 0
    for prefix, event, value in _parse(src):
        if event in _SCALARS:
            if pairs is not None:
                if size <= MAX_ROW_BYTES:
                    text = value if event == "string" else _text(value)
                    pairs.append((prefix[skip:], text))
                    size += len(text) + len(prefix) - skip + 6
                elif keep and prefix[skip:] == keep:
                    pairs.insert(0, (keep, _text(value)))
                continue
            if prefix == record:
                yield [("", _text(value))], 0
            if not prefix:
                state["roots"] += 1
        elif event == "end_map":
            if pairs is not None and prefix == record:
                yield pairs, size
                pairs = None
        elif event == "start_map" or event == "start_array":
            if len(prefix) > _DEEP:
                raise _too_deep(src)
            if not prefix:
                state["roots"] += 1
            if pairs is None and prefix == record and event == "start_map":
                pairs, size = [], 2


def _flatten(value: Any, prefix: str, out: Pairs) -> None:
    """A parsed JSON Lines record as the key paths ``ijson`` would give (``a.b``, ``tags.item``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, list):
        for item in value:
            _flatten(item, f"{prefix}.item" if prefix else "item", out)
    else:
        out.append((prefix, _text(value)))


def _line_record(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the line is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the line holds a JSON {type(value).__name__}, not an object")
    return value


def _is_lines(head: bytes) -> bool:
    """Whether the list is JSON Lines: its first two lines are whole JSON objects each."""
    lines = [ln for ln in head.removeprefix(b"\xef\xbb\xbf").split(b"\n")[:3] if ln.strip()][:2]
    try:
        return len(lines) == 2 and all(_line_record(ln) for ln in lines)
    except ValueError:
        return False


class JsonReader:
    format = "json"

    def __init__(self, payload: Payload, hints: ReadHints) -> None:
        self._payload = payload
        self.end_proven = False
        self.unterminated = False
        self._lines = _is_lines(payload.head)
        sample = FieldSample()
        arrays: set[str] = set()
        if self._lines:
            self._record, where = "", "of each line"
            with payload.open() as stream:
                data = stream.read(SAMPLE_BYTES)
                lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
                if stream.read(1):
                    lines.pop()  # a partial line
            for line in [ln for ln in lines if ln.strip()][:SAMPLE_RECORDS]:
                pairs: Pairs = []
                try:
                    _flatten(_line_record(line), "", pairs)
                except (ValueError, RecursionError):
                    continue
                sample.add(pairs)
        else:
            survey = _Survey(payload)
            arrays = survey.arrays
            self._record = pick_record(
                survey.isins, survey.values, hints.column, _rank, survey.record_of, survey.label, survey.looked_at
            )
            where = f"of {survey.label(self._record)}"
            if survey.is_item(self._record) and survey.is_item(self._record.rpartition(".")[0]):
                raise ParseError(
                    f"the ISINs are in arrays of values ({survey.label(self._record)}), a table without keys: "
                    "this reader reads objects (or lists of ISINs); convert the list to objects or CSV"
                )
            with Stream(payload.open(), strip=b"") as src:
                try:
                    for pairs, _size in _records(src, self._record, {"roots": 0}):
                        sample.add(pairs)
                        if sample.records >= SAMPLE_RECORDS or src.count > SAMPLE_BYTES:
                            break
                except (ijson.JSONError, UnicodeDecodeError) as exc:
                    raise _broken(exc, src, "") from None
        record_label = _display(self._record, arrays)

        def label(path: str) -> str:
            return _display(f"{self._record}.{path}" if self._record else path, arrays)[len(record_label) :].lstrip(".")

        field, by = choose_field(
            sample, hints.column, where, lambda p: label(p) or record_label, lambda h, p: _rank(h, p, self._record)
        )
        self._field = field
        layout = "json lines" if self._lines else {"item": "array", "": "object"}.get(self._record, "envelope")
        self.details: dict[str, Any] = {"layout": layout, "record": record_label, "isin_path": label(field)}
        identity = f"{record_label}.{label(field)}" if record_label and label(field) else record_label or label(field)
        self.columns = [ColumnChoice(identity, by)]
        self._label = record_label

    def rows(self) -> Iterator[Item]:
        yield from self._line_rows() if self._lines else self._document_rows()

    def _document_rows(self) -> Iterator[Item]:
        names: dict[str, str] = {}
        state = {"roots": 0}
        n = 0
        with Stream(self._payload.open(), strip=b"") as src:
            try:
                for pairs, size in _records(src, self._record, state, self._field):
                    n += 1
                    where = f"record {n} of {self._label}" if self._label else f"record {n}"
                    if size > MAX_ROW_BYTES:
                        reason = f"the record is over {MAX_ROW_BYTES} bytes"
                        yield BadRow(n, oversized(pairs, self._field), RowError.MALFORMED_ROW, reason, where)
                    else:
                        yield record_row(n, pairs, self._field, where, names)
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise _broken(exc, src, f", after record {n}") from None
        self.details["records"] = n
        if state["roots"] > 1:
            self.details["layout"] = "json lines"  # objects one after another: nothing proves the last
        self.end_proven = state["roots"] == 1

    def _line_rows(self) -> Iterator[Item]:
        names: dict[str, str] = {}
        n = 0
        with self._payload.open() as stream:
            chunks = LineChunks(stream, b"\n")
            for first, lines in chunks:
                for number, line in enumerate(lines, start=first):
                    if not line.strip():
                        continue
                    n += 1
                    pairs: Pairs = []
                    try:
                        _flatten(_line_record(line.removeprefix(b"\xef\xbb\xbf")), "", pairs)
                    except (ValueError, RecursionError) as exc:
                        text = shorten(line.decode("utf-8", "replace"))
                        yield BadRow(number, text, RowError.MALFORMED_ROW, str(exc), f"line {number}")
                        continue
                    yield record_row(number, pairs, self._field, f"line {number}", names)
                for long in chunks.overlong:
                    reason = f"the line is longer than {MAX_ROW_BYTES} bytes"
                    yield BadRow(
                        long.line, shorten(long.describe()), RowError.MALFORMED_ROW, reason, f"line {long.line}"
                    )
                chunks.overlong.clear()
            self.unterminated = chunks.unterminated
        self.details["records"] = n


def open_json(payload: Payload, hints: ReadHints) -> JsonReader:
    """Detect the layout, the record and the ISIN key path of a JSON list (see the module's docstring)."""
    return JsonReader(payload, hints)
