"""A plain byte range of a large delimited list, read, validated and encoded as columns.

Most ranges of a big list are plain (GLEIF's are all plain):
- every line has the same number of fields, and no line is blank;
- no value has whitespace around it;
- every ISIN is valid in its compact form.

A plain range needs no decision per row, so its rows need no Python each:
- pyarrow's CSV reader (C++) splits the range;
- numpy checks every ISIN's shape and check digit, the rules of ``core.isin``'s fast path;
- the event bytes are joined column by column (pyarrow's ``binary_join_element_wise``) from the
  pieces ``schemas.fastpath.EventEncoder`` writes.

Only the content hash (BLAKE2b, which Arrow has no kernel for) is computed row by row.

``read_plain(job, data, out)`` fills ``out`` with what the row loop would have given for the
range, or returns False when the range is not plain; the row loop then reads it. So every row
that needs a decision (a dead letter, a value to strip, a blank line, a heading) gets the row
loop's, and the output is the row loop's byte for byte: ``tests/unit/test_columnar.py`` compares
both on the real lists and on generated ranges.

pyarrow and numpy are used here only: the one adapter of their APIs.
"""

from __future__ import annotations

import codecs
import hashlib
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.isin import known_prefixes
from producer.distinct import BUCKETS
from producer.reading.model import MAX_ROW_BYTES
from schemas.fastpath import avro_string, zigzag_varint

if TYPE_CHECKING:
    from producer.parallel import Job, RangeResult

_ENCODINGS = ("utf-8", "ascii")
"""Encodings whose bytes pyarrow reads as the row loop decodes them."""

_DOUBLED = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int64)
"""A digit at a doubled position of the Luhn sum adds the digit sum of twice its value."""


SPACES_BELOW = 0x3001
"""Every character ``str.isspace()`` holds lies below this (U+3000 is the last)."""


@cache
def _luhn_tables() -> tuple[np.ndarray, np.ndarray]:
    """What a character adds to the Luhn sum, by whether its last digit is at a doubled place, and
    whether it moves the next character's place (a digit does; a letter's two digits do not)."""
    adds = np.zeros((2, 256), dtype=np.int16)
    flips = np.zeros(256, dtype=np.uint8)
    for code in range(256):
        char = chr(code)
        if "0" <= char <= "9":
            digits = [code - 0x30]
            flips[code] = 1
        elif "A" <= char <= "Z":
            digits = [(code - 0x41 + 10) % 10, (code - 0x41 + 10) // 10]  # from the right
        else:
            continue
        for place in (0, 1):
            adds[place, code] = sum(int(_DOUBLED[d]) if (place + k) % 2 else d for k, d in enumerate(digits))
    return adds, flips


@cache
def _edge_space() -> str:
    """An RE2 pattern for a value that starts or ends with what ``str.strip()`` removes."""
    spaces = "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(SPACES_BELOW)) if c.isspace())
    return f"^[{spaces}]|[{spaces}]$"


def read_plain(job: Job, data: bytes, out: RangeResult) -> bool:
    """Fill ``out`` with the range's events, counts and packed ISINs if the range is plain."""
    if codecs.lookup(job.encoding).name not in _ENCODINGS or len(job.delimiter) != 1 or not data:
        return False
    if data.startswith(codecs.BOM_UTF8):
        return False  # pyarrow's reader drops it; the row loop keeps it in the first field
    if not job.delimiter.isascii() or job.delimiter in "\r\n":
        return False
    unterminated = not data.endswith(b"\n")
    if unterminated and not job.last:
        return False
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    starts = np.concatenate(([0], ends + 1))[: len(ends) + int(unterminated)]
    stops = np.concatenate((ends, [len(data)]))[: len(starts)]
    if int((stops - starts).max()) > MAX_ROW_BYTES or int((stops - starts).min()) == 0:
        return False  # an over-long line (in bytes, so at least as long in characters), a blank one
    rows = len(starts)
    width = data[: stops[0]].count(job.delimiter.encode()) + 1
    table = _parse(data, job.delimiter, width)
    if table is None or table.num_rows != rows:
        return False
    layout = job.layout
    isin_col = layout.isin_col
    if width <= isin_col:
        return False
    ncols = max(layout.header_width, isin_col + 1) if layout.header_line else layout.width
    for extra in range(ncols, width):  # fields past the header are allowed only when empty
        if pc.any(pc.not_equal(table.column(extra), "")).as_py():
            return False
    attr_cols = [(i, name) for i, name in enumerate(layout.names) if i != isin_col and i < width]
    used = [isin_col] + [i for i, _ in attr_cols]
    for i in used:
        if pc.any(pc.match_substring_regex(table.column(i), _edge_space())).as_py():
            return False
    isins = _binary(table.column(isin_col))
    grid = _isin_grid(isins)
    if grid is None:
        return False
    attrs = [(name, _binary(table.column(i))) for i, name in attr_cols]
    values = _events(job, isins, attrs, rows)
    if values is None:
        return False
    counts = out.counts
    counts.rows += rows
    counts.valid += rows
    counts.last_bad = False
    _count_prefixes(grid, counts.unknown_prefixes)
    out.keys = grid.tobytes()
    out.values, lengths = _contents(values)
    out.lengths = lengths.astype(np.uint32).tobytes()
    out.buckets = _buckets(grid)
    out.unterminated = unterminated
    return True


def _parse(data: bytes, delimiter: str, width: int) -> pa.Table | None:
    names = [f"f{i}" for i in range(width)]
    try:
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=len(data) + 1),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                double_quote=False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )
    except pa.lib.ArrowException:
        return None  # a line with another number of fields, bytes that are not UTF-8, anything else


def _binary(column: pa.ChunkedArray) -> pa.BinaryArray:
    return column.combine_chunks().cast(pa.binary())


def _contents(array: pa.Array) -> tuple[bytes, np.ndarray]:
    """The bytes of a binary array's values, one after the other, and each value's length."""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    return data.to_pybytes()[offsets[0] : offsets[-1]], np.diff(offsets)


def _isin_grid(isins: pa.BinaryArray) -> np.ndarray | None:
    """The ISINs as a rows-by-12 array of bytes if every one is valid in compact form, else None."""
    if not pc.all(pc.equal(pc.binary_length(isins), 12)).as_py():
        return None
    raw, _ = _contents(isins)
    grid = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 12)
    return grid if valid_isins(grid).all() else None


def valid_isins(grid: np.ndarray) -> np.ndarray:
    """Which rows of a rows-by-12 array of bytes are valid ISINs in compact form: two letters, nine
    letters or digits, a digit, and the check digit (``core.isin``'s fast path, row for row)."""
    upper = (grid >= 0x41) & (grid <= 0x5A)
    digit = (grid >= 0x30) & (grid <= 0x39)
    shaped = upper[:, :2].all(axis=1) & (upper[:, 2:11] | digit[:, 2:11]).all(axis=1) & digit[:, 11]
    # Luhn over the digits of the ISIN with letters written as two digits (A=10 ... Z=35), from
    # the right: what a character adds depends on whether its last digit is at a doubled place.
    adds, flips = _luhn_tables()
    total = np.zeros(len(grid), dtype=np.int16)
    doubled = np.zeros(len(grid), dtype=np.uint8)
    for col in range(11, -1, -1):
        chars = grid[:, col]
        total += adds[doubled, chars]
        doubled ^= flips[chars]
    valid: np.ndarray = shaped & (total % 10 == 0)
    return valid


def _count_prefixes(grid: np.ndarray, unknown: dict[str, int]) -> None:
    """Count the prefixes python-stdnum does not know, in the order they first appear."""
    codes = (grid[:, 0].astype(np.int64) - 0x41) * 26 + grid[:, 1] - 0x41
    present, first = np.unique(codes, return_index=True)
    counts = np.bincount(codes, minlength=26 * 26)
    known = known_prefixes()
    for code in present[np.argsort(first)].tolist():
        prefix = chr(0x41 + code // 26) + chr(0x41 + code % 26)
        if prefix not in known:
            unknown[prefix] = unknown.get(prefix, 0) + int(counts[code])


def _buckets(grid: np.ndarray) -> list[bytes]:
    """The ISINs packed as ``producer.distinct`` packs them: the first 11 characters in base 36."""
    digits = np.where(grid[:, :11] <= 0x39, grid[:, :11].astype(np.uint64) - 0x30, grid[:, :11].astype(np.uint64) - 55)
    numbers = np.zeros(len(grid), dtype=np.uint64)
    for col in range(11):
        numbers = numbers * np.uint64(36) + digits[:, col]
    bucket = numbers & np.uint64(BUCKETS - 1)
    return [numbers[bucket == b].astype("=u8").tobytes() for b in range(BUCKETS)]


def _varints(numbers: np.ndarray, present: np.ndarray | None = None) -> pa.BinaryArray:
    """Avro longs (zig-zag varints) of non-negative ``numbers``; empty where not ``present``."""
    z = numbers.astype(np.uint64) << np.uint64(1)
    size = np.ones(len(z), dtype=np.int64)
    for k in range(1, 10):
        size += z >= np.uint64(1 << (7 * k))
    if present is not None:
        size[~present] = 0
    width = int(size.max()) if len(z) else 0
    grid = np.empty((len(z), width), dtype=np.uint8)
    for k in range(width):
        more = (size > k + 1).astype(np.uint64) << np.uint64(7)
        grid[:, k] = ((z >> np.uint64(7 * k)) & np.uint64(0x7F)) | more
    data = grid[np.arange(width) < size[:, None]]
    offsets = np.zeros(len(z) + 1, dtype=np.int32)
    np.cumsum(size, out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), len(z), [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def _fixed(values: bytes, size: int, count: int) -> pa.BinaryArray:
    offsets = np.arange(0, size * (count + 1), size, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(values)])


def _events(
    job: Job, isins: pa.BinaryArray, attrs: list[tuple[str, pa.BinaryArray]], rows: int
) -> pa.BinaryArray | None:
    """Each row's IsinEvent, as ``EventEncoder`` writes it (see there for the fields' order)."""
    scalar = pa.scalar
    empty = scalar(b"", pa.binary())
    filled = [pc.greater(pc.binary_length(a), 0) for _, a in attrs]
    # the content hash: the source, then each non-empty attribute in name order (schemas.content_hash)
    hashed: list[pa.Array | pa.Scalar] = [scalar(job.source.encode(), pa.binary())]
    for (name, values), has in sorted(zip(attrs, filled, strict=True), key=lambda item: item[0][0]):
        hashed += (pc.if_else(has, scalar(b"\x1e" + name.encode() + b"\x1f", pa.binary()), empty), values)
    if len(hashed) > 1:
        blake2b = hashlib.blake2b
        texts = pc.binary_join_element_wise(*hashed, empty).to_pylist()
        digests = "".join([blake2b(text, digest_size=8).hexdigest() for text in texts]).encode()
        digest: pa.Array | pa.Scalar = _fixed(digests, 16, rows)
    else:
        digest = scalar(hashlib.blake2b(job.source.encode(), digest_size=8).hexdigest().encode(), pa.binary())
    first = np.arange(job.first_line, job.first_line + rows, dtype=np.int64)
    published = zigzag_varint(job.published_at) + (
        b"\x00" if job.slot_ms is None else b"\x02" + zigzag_varint(job.slot_ms)
    )
    pieces: list[pa.Array | pa.Scalar] = [
        scalar(job.header + b"\x20", pa.binary()),
        digest,
        scalar(avro_string(job.run_id) + b"\x18", pa.binary()),
        isins,
        scalar(b"\x04", pa.binary()),
        pc.binary_slice(isins, 0, 2),
        scalar(avro_string(job.source), pa.binary()),
        _varints(first),
    ]
    if attrs:
        mask = np.stack([f.to_numpy(zero_copy_only=False) for f in filled])
        count = mask.sum(axis=0)
        pieces.append(_varints(count, count > 0))
        for (name, values), has, row_mask in zip(attrs, filled, mask, strict=True):
            lengths = pc.binary_length(values).to_numpy()
            pieces += (
                pc.if_else(has, scalar(avro_string(name), pa.binary()), empty),
                _varints(lengths, row_mask),
                values,
            )
    pieces.append(scalar(b"\x00" + published, pa.binary()))
    joined = pc.binary_join_element_wise(*pieces, empty)
    return joined if isinstance(joined, pa.BinaryArray) else None
