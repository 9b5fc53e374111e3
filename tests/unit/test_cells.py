"""A spreadsheet cell's value as text."""

from __future__ import annotations

import datetime as dt

from producer.reading.cells import cell_text


def test_cell_values_as_text() -> None:
    values: list[tuple[object, str]] = [
        (12345.0, "12345"), (1.5, "1.5"), (0.1, "0.1"), (-0.0, "0"), (1e20, "1e+20"), (7, "7"), (True, "true"),
        (False, "false"), (dt.date(2024, 1, 2), "2024-01-02"), (dt.datetime(2024, 1, 2), "2024-01-02"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"), (dt.time(13, 30), "13:30:00"),
        (dt.timedelta(days=1, hours=2), "PT26H00M00S"), ("  x  ", "x"), ("\xa0 ", ""), (None, ""),
    ]  # fmt: skip
    for value, text in values:
        assert cell_text(value) == text, value
