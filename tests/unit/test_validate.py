"""ISIN validation: python-stdnum's rules, our error kinds and reasons."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from stdnum import isin as stdnum_isin

from core.isin import InvalidIsin, RowError, validate_isin


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("US0378331005", "US0378331005"),  # Apple
        ("DE0007236101", "DE0007236101"),  # Siemens
        ("  us0378331005 ", "US0378331005"),  # stdnum's compact form: upper case, no spaces
        ("XS2350756446", "XS2350756446"),  # XS: international securities
    ],
)
def test_valid(value: str, expected: str) -> None:
    assert validate_isin(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "reason"),
    [
        ("US0378331006", RowError.INVALID_CHECK_DIGIT, "check digit is 6, expected 5"),
        ("ZZ0378331005", RowError.INVALID_COUNTRY, "unknown country code 'ZZ'"),
        ("NA", RowError.INVALID_LENGTH, "2 characters"),
        ("US03783310055", RowError.INVALID_LENGTH, "13 characters"),
        ("-", RowError.INVALID_FORMAT, "only the letters A-Z and digits 0-9"),
        ("US-378331005", RowError.INVALID_FORMAT, "only the letters"),
        ("", RowError.MISSING_ISIN, "empty"),
        ("   ", RowError.MISSING_ISIN, "empty"),
    ],
)
def test_invalid(value: str, error: RowError, reason: str) -> None:
    with pytest.raises(InvalidIsin) as info:
        validate_isin(value)
    assert info.value.error is error
    assert reason in info.value.reason


def test_long_junk_is_shortened_in_the_reason() -> None:
    with pytest.raises(InvalidIsin) as info:
        validate_isin("x" * 500)
    assert len(info.value.reason) < 120


def test_the_fast_path_agrees_with_stdnum_on_every_real_isin(shared_data: Path) -> None:
    from core.isin import _fast_valid
    from producer.reading import ListFile, Row

    seen = 0
    for path in sorted(shared_data.glob("*.csv")):
        with ListFile(path) as reader:
            for row in reader.rows():
                if isinstance(row, Row):
                    value = row.isin.strip()
                    assert _fast_valid(value) == stdnum_isin.is_valid(value), value
                    seen += 1
    assert seen > 25_000


def test_the_fast_path_agrees_with_stdnum_on_generated_near_misses() -> None:
    """Valid ISINs from every two-letter prefix, and every one-character change of them."""
    from core.isin import _fast_valid

    rng = random.Random(6166)
    alphabet = string.ascii_uppercase + string.digits
    checked = accepted = 0
    for a in string.ascii_uppercase:
        for b in string.ascii_uppercase:
            for _ in range(3):
                body = "".join(rng.choices(alphabet, k=9))
                valid = stdnum_isin.from_natid(a + b, body) if body.isalnum() else None
                assert valid is not None
                candidates = [valid, valid[:-1], valid + "0", valid.lower()]
                for i in range(12):
                    candidates.append(valid[:i] + rng.choice(alphabet) + valid[i + 1 :])
                    if i < 11:
                        candidates.append(valid[:i] + valid[i + 1] + valid[i] + valid[i + 2 :])
                for c in candidates:
                    fast = _fast_valid(c)
                    assert fast == (stdnum_isin.is_valid(c) and c == stdnum_isin.compact(c)), c
                    checked += 1
                    accepted += fast
    assert checked > 50_000 and 0 < accepted < checked


def test_the_fast_path_is_only_a_shortcut() -> None:
    # lower case and spaces are valid for stdnum but not compact: the slow path answers
    assert validate_isin(" US 0378 3310 05 ") == "US0378331005"
