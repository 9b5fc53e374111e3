"""Helpers of the reader's unit tests."""

from __future__ import annotations

import csv
from pathlib import Path

from producer.reading import BadRow, ListFile, ReadHints, Row


def read(path: Path, hints: ReadHints | None = None) -> tuple[ListFile, list[Row], list[BadRow]]:
    """Everything a file reads as: the reader (for what it detected), its rows and bad rows."""
    with ListFile(path, hints) as lf:
        items = list(lf.rows())
    return lf, [i for i in items if isinstance(i, Row)], [i for i in items if isinstance(i, BadRow)]


def csv_rows(path: Path) -> list[dict[str, str]]:
    """A real CSV list read by the standard library, independently of the reader under test."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
