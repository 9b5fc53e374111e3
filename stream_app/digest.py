"""An in-memory digest of one table partition: which keys it holds, with which content hashes.

The dedup loop asks of every event "is its content hash among the stored record's
``listing_hashes``?". Most of a day's events are unchanged, and answering from RocksDB is a
random point lookup of a present key (about 2.5-4 µs on this machine, most of day 2's loop).
The digest answers it without RocksDB, exactly, for a whole segment of events at once:

- ``ABSENT``: the partition holds no record of the key (a new ISIN: nothing to read);
- ``UNCHANGED``: the stored record's ``listing_hashes`` contain the event's hash;
- ``READ``: anything else (a changed listing, or a key or hash it does not hold in its compact
  form): the loop reads the record from RocksDB and decides as before.

Exactness: the digest holds every key of the partition and every space-separated token of its
record's ``listing_hashes``. A key that is twelve characters of ``0-9A-Z`` (an ISIN's shape) with
tokens that are sixteen lowercase hex digits (the producer's content hash) is held as two
``uint64`` (the key in base 36, the hash in base 16: exact, and ordered like the bytes), sorted
for ``searchsorted``. Anything else is held as the raw ``listing_hashes`` in a dict, and asked with
the loop's own test (``digest in listing_hashes``). For a sixteen-hex-digit hash the two agree: it
holds no space, so it can only match a whole token.

Writes since the arrays were built go to that dict too, and are folded into the arrays every
``FOLD_MIN`` keys. The owner keeps the digest equal to the store: every write of the
partition's records goes through ``update``, and a digest is dropped whenever something else may
have written the store (a rebalance, Faust's recovery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice

import numpy as np
import numpy.typing as npt

from schemas import SerializationError
from schemas.serde import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER
from stream_app.records import listing_hashes
from stream_app.store import TableStore

logger = logging.getLogger(__name__)

ABSENT, UNCHANGED, READ = 0, 1, 2

KEY_WIDTH = 12
HASH_WIDTH = 16
FOLD_MIN = 20_000
"""Writes kept in the dict before they are folded into the arrays (a fold is linear in the arrays:
about 5 ms for a partition of 1.5 million keys)."""

_U64 = npt.NDArray[np.uint64]
_CONFLUENT = bytes([CONFLUENT_MAGIC])  # the Confluent wire format (a five-byte header)
_ONE_HASH = bytes([HASH_WIDTH * 2])  # Avro's zigzag varint of a sixteen-byte string's length
_NO_HASH = b"0" * HASH_WIDTH  # in place of a hash of another length (never found)
_NOT_A_DIGIT = 255
_DIGITS36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
_BASE36 = np.full(256, _NOT_A_DIGIT, np.uint8)
for _i, _c in enumerate(_DIGITS36.tolist()):
    _BASE36[_c] = _i
_BASE16 = np.full(256, _NOT_A_DIGIT, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _BASE16[_c] = _i


def _numbers(
    values: list[bytes], width: int, table: npt.NDArray[np.uint8], base: int
) -> tuple[_U64, npt.NDArray[np.bool_]]:
    """Each value (``width`` bytes long, all of them) as a number in ``base`` (``table`` maps a
    byte to its digit), and whether every byte was a digit (where not, the number is meaningless)."""
    if not values:
        return np.zeros(0, np.uint64), np.zeros(0, np.bool_)
    digits = table[np.frombuffer(b"".join(values), np.uint8).reshape(-1, width)]
    ok = (digits != _NOT_A_DIGIT).all(axis=1)
    out = np.zeros(len(values), np.uint64)
    for column in range(width):
        out = out * np.uint64(base) + digits[:, column]
    return out, ok


def held_hashes(value: bytes) -> bytes:
    """A stored record's ``listing_hashes`` for the digest. One sixteen-byte hash (a one-byte
    length, 32, right after the header) is sliced out; anything else is read by ``records.listing_hashes``.
    For a record it cannot be read from, a space, which no content hash is: its key's events are
    read from the store, never taken as unchanged or new."""
    if value[5:6] == _ONE_HASH and value[:1] == _CONFLUENT:
        return value[6:22]
    if value[10:11] == _ONE_HASH and value[:2] == SINGLE_OBJECT_MARKER:
        return value[11:27]
    try:
        return listing_hashes(value)
    except (IndexError, SerializationError):
        return b" "


def _compact(key: bytes, held: bytes) -> list[bytes] | None:
    """The tokens of a record's hashes if the arrays can hold it (else None: the dict holds it)."""
    if len(key) != KEY_WIDTH:
        return None
    if len(held) == HASH_WIDTH:
        return [held]
    tokens = held.split(b" ")
    return tokens if all(len(t) == HASH_WIDTH for t in tokens) else None


class PartitionDigest:
    def __init__(self) -> None:
        self._keys: _U64 = np.zeros(0, np.uint64)
        self._hashes: _U64 = np.zeros(0, np.uint64)
        self._span = 1  # the most tokens any key has in the arrays
        self._other: dict[bytes, bytes | None] = {}
        """Keys not in the arrays' form, and every write since the arrays were built (None: deleted)."""
        self._loaded: list[tuple[_U64, _U64]] = []  # loaded but not yet in the arrays

    def __len__(self) -> int:
        """Entries held (a token per key in the arrays, a key in the dict)."""
        return len(self._keys) + sum(len(k) for k, _ in self._loaded) + len(self._other)

    def load(self, hashes_by_key: Iterable[tuple[bytes, bytes]]) -> None:
        """Records of the partition as stored, (key, ``listing_hashes``), each key once, at a
        build (before any ``update``); ``fold`` after the last. Held as numbers at once: 16
        bytes a hash, no Python object."""
        self._loaded.append(self._held_as_numbers(hashes_by_key))

    def _held_as_numbers(self, hashes_by_key: Iterable[tuple[bytes, bytes | None]]) -> tuple[_U64, _U64]:
        """(key, ``listing_hashes``) as the arrays' numbers, a token an entry; what they cannot
        hold goes to the dict, a deleted key (None) nowhere."""
        keys: list[bytes] = []
        hashes: list[bytes] = []
        for key, held in hashes_by_key:
            if held is None:
                continue
            tokens = _compact(key, held)
            if tokens is None:
                self._other[key] = held
            else:
                keys.extend([key] * len(tokens))
                hashes.extend(tokens)
        return self._as_numbers(keys, hashes)

    def _as_numbers(self, keys: list[bytes], hashes: list[bytes]) -> tuple[_U64, _U64]:
        """Keys and hashes as numbers; a key with a byte that is not a digit goes to the dict."""
        numbers, keys_ok = _numbers(keys, KEY_WIDTH, _BASE36, 36)
        hash_numbers, hashes_ok = _numbers(hashes, HASH_WIDTH, _BASE16, 16)
        bad = ~(keys_ok & hashes_ok)
        if bad.any():
            refused = np.isin(numbers, numbers[bad])  # every token of such a key, and of any sharing its number
            tokens_of: dict[bytes, list[bytes]] = {}
            for index in np.flatnonzero(refused).tolist():
                tokens_of.setdefault(keys[index], []).append(hashes[index])
            for key, tokens in tokens_of.items():
                self._other[key] = b" ".join(tokens)  # the stored listing_hashes, as they were split
            numbers, hash_numbers = numbers[~refused], hash_numbers[~refused]
        return numbers, hash_numbers

    def update(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Records written to the partition (stored CurrentRecords; None: deleted)."""
        other = self._other
        for key, value in changes.items():
            other[key] = None if value is None else held_hashes(value)
        if len(other) > FOLD_MIN:
            self.fold()

    def classify(self, keys: list[bytes], digests: list[bytes]) -> list[int]:
        """``ABSENT``, ``UNCHANGED`` or ``READ`` for each (key, content hash) pair."""
        n = len(keys)
        if not n:
            return []
        other = self._other
        in_other = np.fromiter(map(other.__contains__, keys), np.bool_, n) if other else np.zeros(n, np.bool_)
        # a key neither in the dict nor of the arrays' width is absent: the arrays hold no other
        compact = (np.fromiter(map(len, keys), np.int64, n) == KEY_WIDTH) & ~in_other
        verdicts = np.full(n, ABSENT, np.int8)
        if len(self._keys) and compact.any():
            every = bool(compact.all())
            at_ = np.flatnonzero(compact)
            picked = at_.tolist()
            asked_keys = keys if every else [keys[i] for i in picked]
            asked = digests if every else [digests[i] for i in picked]
            sized = np.fromiter(map(len, asked), np.int64, len(asked)) == HASH_WIDTH
            if not sized.all():
                asked = [h if ok else _NO_HASH for h, ok in zip(asked, sized.tolist(), strict=True)]
            wanted_keys, keys_ok = _numbers(asked_keys, KEY_WIDTH, _BASE36, 36)
            wanted_hashes, hashes_ok = _numbers(asked, HASH_WIDTH, _BASE16, 16)
            stored_keys, stored = self._keys, self._hashes
            last = len(stored_keys) - 1
            at = np.searchsorted(stored_keys, wanted_keys)
            present = keys_ok & (stored_keys[np.minimum(at, last)] == wanted_keys)
            found = np.zeros(len(at), np.bool_)
            for step in range(self._span):
                slot = np.minimum(at + step, last)
                found |= (stored_keys[slot] == wanted_keys) & (stored[slot] == wanted_hashes)
            found &= present & hashes_ok & sized
            verdicts[at_] = np.where(found, UNCHANGED, np.where(present, READ, ABSENT))
        out: list[int] = verdicts.tolist()
        if other:
            for i in np.flatnonzero(in_other).tolist():
                held = other[keys[i]]
                out[i] = ABSENT if held is None else UNCHANGED if digests[i] in held else READ
        return out

    def fold(self) -> None:
        """The loaded records and the dict's writes into the arrays; keys and hashes not in the
        arrays' form stay in the dict. The written keys' entries are found and dropped, the new
        ones sorted and inserted in place: linear in the arrays, not a sort of them."""
        other, self._other = self._other, {}
        keys, hashes = self._keys, self._hashes
        written, written_ok = _numbers([k for k in other if len(k) == KEY_WIDTH], KEY_WIDTH, _BASE36, 36)
        written = written[written_ok]  # a key not in the arrays' form is not in them
        if len(written) and len(keys):
            at = np.searchsorted(keys, written)
            drop = np.zeros(len(keys), np.bool_)
            last = len(keys) - 1
            for step in range(self._span):  # a key's entries are side by side, at most span of them
                slot = np.minimum(at + step, last)
                drop[slot[keys[slot] == written]] = True
            keys, hashes = keys[~drop], hashes[~drop]
        parts = [*self._loaded, self._held_as_numbers(other.items())]
        self._loaded = []
        new_keys = np.concatenate([k for k, _ in parts])
        new_hashes = np.concatenate([h for _, h in parts])
        if len(new_keys):
            order = np.lexsort((new_hashes, new_keys))
            new_keys, new_hashes = new_keys[order], new_hashes[order]
            starts = np.flatnonzero(np.concatenate([[True], new_keys[1:] != new_keys[:-1]]))
            # an upper bound: entries of keys dropped since are not counted down (it costs a step)
            self._span = max(self._span, int(np.diff(np.append(starts, len(new_keys))).max()))
            # a new key's entries go before what follows them, together (none of its old ones is left)
            at = np.searchsorted(keys, new_keys)
            keys, hashes = np.insert(keys, at, new_keys), np.insert(hashes, at, new_hashes)
        self._keys, self._hashes = keys, hashes

    def _held_keys(self) -> _U64:
        """Every key of the arrays once (not a token each), after folding the writes since."""
        self.fold()
        held = self._keys
        return held[np.concatenate(([True], held[1:] != held[:-1]))] if len(held) else held

    def keys_held(self) -> int:
        """How many keys the partition holds (it folds the writes since)."""
        return len(self._held_keys()) + len(self._other)

    async def unseen(self, seen: Iterator[bytes], chunk: int = 20_000) -> list[bytes]:
        """The keys the partition holds that ``seen`` lacks, in byte order: what an end-of-run
        sweep must read, without reading the rest. ``seen`` is taken ``chunk`` keys at a time,
        each marked on the arrays' keys with ``searchsorted``, yielding to the event loop between
        chunks. Base-36 numbers keep the keys' byte order, so the arrays' keys come back sorted.

        Only the dedup loop of the partition writes the digest, and it is waiting on this."""
        held = self._held_keys()
        other = self._other
        marked = np.zeros(len(held), np.bool_)
        other_seen: set[bytes] = set()
        last = len(held) - 1
        while part := list(islice(seen, chunk)):
            numbers, ok = _numbers([k for k in part if len(k) == KEY_WIDTH], KEY_WIDTH, _BASE36, 36)
            numbers = numbers[ok]  # a key that is not base 36 stands for no key of the arrays
            if len(held) and len(numbers):
                at = np.minimum(np.searchsorted(held, numbers), last)
                marked[at[held[at] == numbers]] = True
            if other:
                other_seen.update(k for k in part if k in other)
            await asyncio.sleep(0)
        out = _as_keys(held[~marked])
        if other:
            out = sorted([*out, *(k for k in other if k not in other_seen)])
        return out


def _as_keys(numbers: _U64) -> list[bytes]:
    """Base-36 numbers of the arrays back to their twelve-byte keys."""
    if not len(numbers):
        return []
    digits = np.zeros((len(numbers), KEY_WIDTH), np.uint8)
    rest = numbers.copy()
    for column in range(KEY_WIDTH - 1, -1, -1):
        digits[:, column] = rest % np.uint64(36)
        rest //= np.uint64(36)
    blob = _DIGITS36[digits].tobytes()
    return [blob[i : i + KEY_WIDTH] for i in range(0, len(blob), KEY_WIDTH)]


async def build(items: Iterable[tuple[bytes, bytes]], yield_every: int = 20_000) -> PartitionDigest:
    """The digest of a partition from its (key, stored record) pairs, yielding to the event loop
    every ``yield_every`` records (a large partition: heartbeats and queries go on)."""
    digest = PartitionDigest()
    chunk: list[tuple[bytes, bytes]] = []
    for key, value in items:
        chunk.append((key, held_hashes(value)))
        if len(chunk) >= yield_every:
            digest.load(chunk)
            chunk = []
            await asyncio.sleep(0)
    digest.load(chunk)
    digest.fold()
    return digest


class Digests:
    """The digests of a store's partitions, kept equal to it: the store's writes go through ``apply``."""

    def __init__(self, store: TableStore, enabled: bool = True, yield_every: int = 20_000) -> None:
        self._store = store
        self._held: dict[int, PartitionDigest] | None = {} if enabled else None
        self._epoch = 0
        self._yield_every = yield_every

    def forget(self) -> None:
        """The store may have been written by something else: every digest is built again when asked for."""
        if self._held is not None:
            self._held.clear()
            self._epoch += 1

    async def of(self, partition: int) -> PartitionDigest | None:
        """The partition's digest, built from the store the first time it is asked for after
        ``forget``. None when off, or when ``forget`` came while it was being built."""
        if self._held is None:
            return None
        held = self._held.get(partition)
        if held is not None:
            return held
        epoch, started = self._epoch, time.monotonic()
        held = await build(self._store.items(partition), self._yield_every)
        if epoch != self._epoch:
            return None
        self._held[partition] = held
        logger.info(
            "partition %d: digest of %d entries built in %.2fs", partition, len(held), time.monotonic() - started
        )
        return held

    def get(self, partition: int) -> PartitionDigest | None:
        """The partition's digest if it is held (asked for since the last ``forget``)."""
        return None if self._held is None else self._held.get(partition)

    def apply(self, partition: int, changes: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        """Write to the store, then to the partition's digest (a write that fails changes neither)."""
        self._store.apply(partition, changes, changelog_offset)
        if changes and self._held is not None:
            held = self._held.get(partition)
            if held is not None:
                held.update(changes)
