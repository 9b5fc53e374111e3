"""An end-of-run sweep's records (stream_app/dedup_io.unswept): read from the digest's keys or
walked, the same records in the same order, whatever state the digest is in."""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import AsyncIterator
from functools import partial

import pytest

from stream_app import dedup_io
from stream_app import digest as digest_module
from stream_app.dedup_io import unswept
from stream_app.digest import _BASE36, KEY_WIDTH, Digests, _as_keys, _numbers
from tests.unit.fakes import DictTableStore
from tests.unit.test_digest import a_key, some_hashes, stored


def _twins(rng: random.Random) -> tuple[bytes, bytes]:
    """A key that is not base 36 and the ISIN-shaped key whose number it comes to."""
    while True:
        prefix = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(KEY_WIDTH - 1))
        bad = (prefix + rng.choice("#a-")).encode()
        numbers, _ = _numbers([bad], KEY_WIDTH, _BASE36, 36)
        if int(numbers[0]) < 36**KEY_WIDTH:
            return bad, _as_keys(numbers)[0]


async def _all(pairs: AsyncIterator[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [pair async for pair in pairs]


@pytest.mark.parametrize("seed", range(40))
def test_reading_the_unseen_keys_yields_what_the_walk_yields(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(digest_module, "FOLD_MIN", rng.choice([1, 5, 40, 10**9]))
    monkeypatch.setattr(dedup_io, "SWEEP_READS_AT_MOST", 10.0)  # the digest's way whenever it can
    store = DictTableStore()
    pool = [a_key(rng) for _ in range(rng.choice([0, 1, 5, 60]))]
    for _ in range(rng.choice([0, 2, 5])):
        pool += _twins(rng)
    pool += [b"", b"X" * 12, b"0" * 12, b"Z" * 12]
    first = {k: stored(some_hashes(rng).decode()) if rng.random() < 0.9 else b"\x00\xffnot avro" for k in pool}
    store.apply(0, {k: v for k, v in first.items() if rng.random() < 0.6}, 1)
    digests = Digests(store, yield_every=rng.choice([1, 3, 1000]))
    asyncio.run(digests.of(0))
    reads = 0

    def counted() -> None:
        nonlocal reads
        reads += 1

    for round_ in range(8):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randrange(0, 20)):
            key = rng.choice(pool)
            changes[key] = None if rng.random() < 0.3 else stored(some_hashes(rng).decode())
        digests.apply(0, changes, round_ + 2)  # the store, then the digest, as the loop writes
        seen = [k for k in pool if rng.random() < 0.5] + [a_key(rng) for _ in range(3)]
        seen = sorted(seen + [k for k in seen if rng.random() < 0.2])  # a key may come twice
        chunk = rng.choice([1, 2, 7, 100])
        held = digests.get(0)
        read = asyncio.run(_all(unswept(store, held, 0, partial(iter, seen), chunk, None, counted)))
        walked = asyncio.run(_all(unswept(store, None, 0, partial(iter, seen), chunk)))
        assert read == walked
        assert [k for k, _ in walked] == sorted(k for k in store.data.get(0, {}) if k not in set(seen))
    assert reads == 8


def test_a_run_that_lacks_more_than_a_quarter_of_the_partition_is_walked() -> None:
    """``listed`` bounds the run's keys: with too few of them, the digest is not asked; with enough,
    it is, and decides by the keys it finds missing."""
    store = DictTableStore()
    keys = sorted(f"XS{n:010d}".encode() for n in range(100))
    store.apply(0, {k: stored("0123456789abcdef") for k in keys}, 1)
    digests = Digests(store)
    held = asyncio.run(digests.of(0))
    reads: list[int] = []
    seen = keys[:80]
    for listed, expected_reads in ((70, 0), (80, 1), (None, 1)):
        pairs = unswept(store, held, 0, partial(iter, seen), 7, listed, lambda: reads.append(1))
        assert [k for k, _ in asyncio.run(_all(pairs))] == keys[80:]
        assert len(reads) == expected_reads
        reads.clear()
    seen = keys[:70]  # 30 missing: more than a quarter, walked though the bound let the digest answer
    pairs = unswept(store, held, 0, partial(iter, seen), 7, 100, lambda: reads.append(1))
    assert [k for k, _ in asyncio.run(_all(pairs))] == keys[70:] and not reads
