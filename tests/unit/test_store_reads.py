"""The table store's batch read (RocksDB's MultiGet through rocksdict) as the dedup loop uses it."""

from __future__ import annotations

from pathlib import Path

from stream_app.store import RdictTableStore


def test_a_batch_read_answers_every_key_in_order_with_none_for_the_missing(tmp_path: Path) -> None:
    store = RdictTableStore(tmp_path / "db")
    try:
        store.apply(2, {b"US0378331005": b"apple", b"DE0007164600": b"sap"}, None)
        store.apply(2, {b"DE0007164600": None}, None)
        read = store.reader(2)
        keys = [b"DE0007164600", b"US0378331005", b"GB0002634946", b"US0378331005"]
        assert read(keys) == [None, b"apple", None, b"apple"]
        assert read([]) == []
        assert store.reader(3)([b"US0378331005"]) == [None]  # another partition: its own database
    finally:
        store.close()
