"""JSON, read as a stream of ``ijson`` events: the survey of a document's first bytes, its records
as flat key paths, JSON Lines' lines; shared by ``jsonfile.py``'s reader and its detection."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from decimal import Decimal
from typing import Any

import ijson

from core.errors import ParseError
from core.isin import is_isin
from producer.reading.container import Payload
from producer.reading.model import MAX_ROW_BYTES, shorten
from producer.reading.records import Pairs, Stream
from producer.reading.recordsets import widen

SAMPLE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 1000
BUFFER = 8192
"""Bytes yajl parses at a time: its events carry key paths as long as the nesting, so a small
buffer bounds the work a hostile nesting costs before ``MAX_DEPTH`` stops it."""
_SCALARS = frozenset(("string", "number", "boolean", "null"))
_STEPS = re.compile(r"\.|\[\*\]")
_DEEP = MAX_DEPTH * 5
"""Key paths longer than this are deeper than ``MAX_DEPTH`` (an array level adds ``.item``)."""


def scalar_text(value: Any) -> str:
    """A scalar as its JSON text: numbers as written (``Decimal``), ``true``, ``false``; null is empty."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse(src: Stream) -> Any:
    return ijson.parse(src, buf_size=BUFFER, multiple_values=True)


def too_deep(src: Stream) -> ParseError:
    return ParseError(f"the JSON is nested deeper than {MAX_DEPTH} levels in its first {src.count} bytes")


def broken(exc: Exception, src: Stream, after: str) -> ParseError:
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


def display(prefix: str | Sequence[str], arrays: set[str]) -> str:
    """``data.item.attributes.isin`` -> ``data[*].attributes.isin`` (``item`` steps of arrays only;
    a ``*`` step of a record pattern stands for any key)."""
    steps = (prefix.split(".") if prefix else []) if isinstance(prefix, str) else list(prefix)
    out = ""
    for i, step in enumerate(steps):
        out += "[*]" if step == "item" and is_array(steps[:i], arrays) else f".{step}" if out else step
    return out


def is_array(steps: list[str], arrays: set[str]) -> bool:
    if "*" not in steps:
        return ".".join(steps) in arrays
    return any(
        len(other) == len(steps) and all(a in ("*", b) for a, b in zip(steps, other, strict=True))
        for other in (a.split(".") for a in arrays)
    )


def rank(hint: str, path: str, record: str = "") -> int:
    """1: ``--column`` is the field's relative key path; 2: a tail of its absolute path; else 0."""
    want = [s.lower() for s in _STEPS.split(hint.strip()) if s and s != "item"]
    rel = [s.lower() for s in path.split(".") if s and s != "item"]
    full = [s.lower() for s in record.split(".") if s and s != "item"] + rel
    if not want:
        return 0
    return 1 if want == rel else 2 if full[-len(want) :] == want else 0


class Survey:
    """Values (non-empty ones: ``filled``) and valid ISINs per key path, objects per path and the
    arrays, in the first bytes."""

    def __init__(self, payload: Payload) -> None:
        self.arrays: set[str] = set()
        self.objects: Counter[str] = Counter()
        self.values: Counter[str] = Counter()
        self.filled: Counter[str] = Counter()
        self.isins: Counter[str] = Counter()
        with Stream(payload.open(), strip=b"") as src:
            try:
                for prefix, event, value in parse(src):
                    if event == "string":
                        self.values[prefix] += 1
                        if value.strip():
                            self.filled[prefix] += 1
                            self.isins[prefix] += is_isin(value)
                    elif event == "start_map" or event == "start_array":
                        if len(prefix) > _DEEP:
                            raise too_deep(src)
                        if event == "start_map":
                            self.objects[prefix] += 1
                        else:
                            self.arrays.add(prefix)
                    elif event in _SCALARS:
                        self.values[prefix] += 1
                        self.filled[prefix] += event != "null"
                    if src.count > SAMPLE_BYTES:
                        break
            except (ijson.JSONError, UnicodeDecodeError) as exc:
                raise broken(exc, src, "") from None
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

    def pattern_of(self, key: str) -> str:
        """``record_of``, as a pattern over the record sets beside it (``*.data.item`` for
        ``securities.data.item`` and ``marketdata.data.item``)."""
        record = self.record_of(key)
        if not record:
            return record
        items = [p for p in (*self.objects, *self.values) if self.is_item(p)]
        return widen(record, items, ".", fixed=lambda step: step == "item")

    def label(self, record: str) -> str:
        return display(record, self.arrays) or "(top level)"


def records(
    src: Stream, record: str, state: dict[str, int], keep: Collection[str] = ()
) -> Iterator[tuple[str, Pairs, int]]:
    """Each record at ``record`` (a key path, or a pattern with ``*`` steps) as its key path,
    its flat (relative key path, text) pairs and about its size; a record over ``MAX_ROW_BYTES``
    keeps only its first pairs and the fields in ``keep`` (the ISIN fields). Counts top-level
    values in ``state``."""
    if "*" in record.split("."):
        regex = re.compile(r"\.".join("[^.]*" if s == "*" else re.escape(s) for s in record.split(".")))

        def match(prefix: str) -> bool:
            return regex.fullmatch(prefix) is not None
    else:

        def match(prefix: str) -> bool:
            return prefix == record

    pairs: Pairs | None = None
    size = skip = 0
    current = ""
    for prefix, event, value in parse(src):
        if event in _SCALARS:
            if pairs is not None:
                if size <= MAX_ROW_BYTES:
                    text = value if event == "string" else scalar_text(value)
                    pairs.append((prefix[skip:], text))
                    size += len(text) + len(prefix) - skip + 6
                elif keep and prefix[skip:] in keep:
                    pairs.insert(0, (prefix[skip:], scalar_text(value)))
                continue
            if match(prefix):
                yield prefix, [("", scalar_text(value))], 0
            if not prefix:
                state["roots"] += 1
        elif event == "end_map":
            if pairs is not None and prefix == current:
                yield current, pairs, size
                pairs = None
        elif event == "start_map" or event == "start_array":
            if len(prefix) > _DEEP:
                raise too_deep(src)
            if not prefix:
                state["roots"] += 1
            if pairs is None and event == "start_map" and match(prefix):
                pairs, size, current = [], 2, prefix
                skip = len(prefix) + 1 if prefix else 0


def flatten(value: Any, prefix: str, out: Pairs) -> None:
    """A parsed JSON Lines record as the key paths ``ijson`` would give (``a.b``, ``tags.item``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, list):
        for item in value:
            flatten(item, f"{prefix}.item" if prefix else "item", out)
    else:
        out.append((prefix, scalar_text(value)))


def line_record(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the line is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the line holds a JSON {type(value).__name__}, not an object")
    return value


def is_lines(head: bytes) -> bool:
    """Whether the list is JSON Lines: its first two lines are whole JSON objects each."""
    lines = [ln for ln in head.removeprefix(b"\xef\xbb\xbf").split(b"\n")[:3] if ln.strip()][:2]
    try:
        return len(lines) == 2 and all(line_record(ln) for ln in lines)
    except ValueError:
        return False
