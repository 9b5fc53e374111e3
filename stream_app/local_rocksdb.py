"""RocksDB options of the worker's own stores beside the table: the seen index, the history and
the identifier index."""

from __future__ import annotations

from rocksdict import Options

WRITE_BUFFER_MB = 16


def local_options() -> Options:
    """Raw bytes, created if missing, memtables of 16 MB (two at most) instead of RocksDB's 64:
    these stores take a day's writes in large batches and are read by prefix, so smaller
    memtables cost little and keep a worker's memory bounded."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(WRITE_BUFFER_MB * 1024 * 1024)
    opts.set_max_write_buffer_number(2)
    return opts
