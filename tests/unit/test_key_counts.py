"""The table's size per partition: one walk of the store, then the dedup loop's net changes."""

from __future__ import annotations

from pathlib import Path

from stream_app.store import KeyCounts, RdictTableStore


def test_counts_follow_writes_without_walking_the_store_again(tmp_path: Path) -> None:
    store = RdictTableStore(tmp_path / "db")
    store.apply(0, {b"A": b"1", b"B": b"2"}, None)
    store.apply(1, {b"C": b"3"}, None)
    net: dict[int, int] = {}
    epoch = ["gen-1", True]
    counts = KeyCounts(store.count, lambda: [0, 1], net, lambda: (epoch[0], bool(epoch[1])))
    try:
        assert counts() == {0: 2, 1: 1}
        # the dedup loop commits: two new keys in partition 0, one deleted in partition 1
        store.apply(0, {b"D": b"4", b"E": b"5"}, None)
        net[0] = 2
        store.apply(1, {b"C": None}, None)
        net[1] = -1
        assert counts() == {0: 4, 1: 0} == {p: store.count(p) for p in (0, 1)}
        assert counts.walks == 1
        # a rebalance (new generation): counted again, from the store itself
        store.apply(1, {b"F": b"6"}, None)  # e.g. written by a changelog recovery, not the dedup loop
        epoch[0] = "gen-2"
        assert counts() == {0: 4, 1: 1}
        assert counts.walks == 2
        net[0] = 3
        store.apply(0, {b"G": b"7"}, None)
        assert counts() == {0: 5, 1: 1}
        assert counts.walks == 2
    finally:
        store.close()


def test_while_recovering_the_count_is_walked_again_once_it_is_stale(tmp_path: Path) -> None:
    store = RdictTableStore(tmp_path / "db")
    now = [100.0]
    counts = KeyCounts(store.count, lambda: [0], {}, lambda: ("gen-1", False), stale_s=1.0, clock=lambda: now[0])
    try:
        assert counts() == {0: 0}
        store.apply(0, {b"A": b"1"}, None)  # recovery writes the store
        now[0] += 0.5
        assert counts() == {0: 0} and counts.walks == 1  # reused while fresh
        now[0] += 0.6
        assert counts() == {0: 1} and counts.walks == 2
    finally:
        store.close()
