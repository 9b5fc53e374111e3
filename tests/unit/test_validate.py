"""ISIN validation: python-stdnum's rules, our error kinds and reasons."""

from __future__ import annotations

import pytest

from producer.validate import InvalidIsin, RowError, validate_isin


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
