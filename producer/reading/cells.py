"""A spreadsheet cell's value as text, and a row's cells as the readers hand them on.

Text is stripped; whole numbers lose their ``.0``; dates are ISO-8601 (a midnight datetime is a
date); durations are ISO-8601 ``PT…``; booleans are ``true``/``false``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta


def cell_text(value: object) -> str:
    """One cell's value as text (see the module's docstring)."""
    if isinstance(value, str):
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        minutes, seconds = divmod(int(value.total_seconds()), 60)
        return f"PT{minutes // 60}H{minutes % 60:02d}M{seconds:02d}S"
    return str(value).strip()


_BLOCK = 256


def texts(values: Iterable[object], lead: int = 0) -> list[str]:
    """A row's cells as text, without its trailing empty cells, after ``lead`` empty ones."""
    cells = values if type(values) is list else list(values)
    # Drop the trailing empty cells first, 256 at a time where they come in blocks: a sheet
    # formatted far to the right gives every row thousands of them (Deutsche Börse's list:
    # 2,000 a row), and converting them one by one cost 80 % of reading such a sheet.
    end = len(cells)
    while end >= _BLOCK:
        block = cells[end - _BLOCK : end]
        if block.count("") + block.count(None) != _BLOCK:
            break
        end -= _BLOCK
    while end and (cells[end - 1] == "" or cells[end - 1] is None):
        end -= 1
    del cells[end:]
    out = [v.strip() if type(v) is str else cell_text(v) for v in cells]
    while out and not out[-1]:
        out.pop()
    if lead and out:
        out[:0] = [""] * lead
    return out
