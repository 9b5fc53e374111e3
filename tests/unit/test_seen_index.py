"""The seen index: a run's ISINs per partition, written a chunk per batch, read back merged."""

from __future__ import annotations

import random
from pathlib import Path

from stream_app.seen import SeenIndex, _prefix


def isins(n: int, seed: int) -> list[bytes]:
    """Distinct 12-byte keys in random order (shaped like ISINs; the index does not check them)."""
    rng = random.Random(seed)
    keys = {f"{rng.choice(['US', 'DE', 'XS', 'GB'])}{rng.randrange(10**10):010d}".encode() for _ in range(n)}
    out = sorted(keys)
    rng.shuffle(out)
    return out


def test_the_keys_of_a_run_come_back_sorted_across_batches_and_runs_stay_apart(tmp_path: Path) -> None:
    seen = SeenIndex(tmp_path / "seen.rdb")
    try:
        mine, other = isins(5000, 1), isins(300, 2)
        repeated = mine[:40]  # a list that has some ISINs on two rows, in different batches
        batches = [mine[i : i + 700] for i in range(0, len(mine), 700)] + [repeated]
        for n, batch in enumerate(batches):
            seen.record(3, {"run-a": batch, "run-b": other[n :: len(batches)]}, last_offset=100 * n)
        seen.record(4, {"run-a": other}, last_offset=7)
        got = list(seen.keys(3, "run-a"))
        assert got == sorted(mine + repeated)
        assert list(seen.keys(3, "run-b")) == sorted(other)
        assert list(seen.keys(4, "run-a")) == sorted(other)
        assert list(seen.keys(3, "run-c")) == []
        seen.finish(3, "run-a", 900)
        assert list(seen.keys(3, "run-a")) == []
        assert list(seen.keys(3, "run-b")) == sorted(other), "finishing one run leaves the others"
    finally:
        seen.close()


def test_keys_of_other_lengths_added_keys_and_an_earlier_versions_entries_merge(tmp_path: Path) -> None:
    seen = SeenIndex(tmp_path / "seen.rdb")
    try:
        chunked = isins(50, 3)
        odd = [b"SHORT", b"A-LONGER-KEY-THAN-AN-ISIN", b"BAD\nKEY"]
        seen.record(0, {"run": chunked[:25] + odd}, last_offset=10)
        seen.add(0, "run", chunked[25:])
        seen.add(0, "run", [b"KEPT00000001"])  # a second add keeps the first one's keys
        legacy = isins(30, 4)
        for key in legacy:  # one entry per key, as the previous version of the index wrote them
            seen._db.put(_prefix(0, "run") + key, b"")
        got = list(seen.keys(0, "run"))
        expected = sorted(chunked + legacy + [b"KEPT00000001", b"SHORT", b"A-LONGER-KEY-THAN-AN-ISIN"])
        assert got == expected, "a key with a newline is left out; every other one comes back, in order"
    finally:
        seen.close()
