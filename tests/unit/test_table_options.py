"""The table's RocksDB options reach the files Faust writes: bloom filter bits per key."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.stores.rocksdb import RocksDBOptions

from stream_app.settings import StreamSettings

KEYS = 20_000


def _filter_bytes_per_key(settings: StreamSettings, path: Path) -> float:
    """Open a partition with Faust's RocksDBOptions of the settings (the app passes them to its
    table: tests/unit/test_faust_contract.py), write one file of KEYS keys, and read its filter size."""
    db = RocksDBOptions(**settings.table_options()).open(path)
    try:
        for i in range(KEYS):
            db.put(f"US{i:010d}".encode(), b"x" * 50)
        db.flush()
        listed = db.property_value("rocksdb.aggregated-table-properties").split(";")
        props = dict(part.strip().split("=", 1) for part in listed if "=" in part)
    finally:
        db.close()
    assert int(props["# entries for filter"]) == KEYS
    return int(props["filter block size"]) / KEYS


def test_the_table_files_carry_ten_bloom_bits_per_key_by_default(tmp_path: Path) -> None:
    assert _filter_bytes_per_key(StreamSettings(), tmp_path / "default") == pytest.approx(10 / 8, rel=0.05)


def test_table_bloom_bits_sets_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_BLOOM_BITS", "3")  # Faust's own default
    settings = StreamSettings()
    assert settings.table_bloom_bits == 3
    assert _filter_bytes_per_key(settings, tmp_path / "three") == pytest.approx(3 / 8, rel=0.05)
