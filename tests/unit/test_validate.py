"""ISIN validation: python-stdnum's rules, our error kinds and reasons."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from stdnum import isin as stdnum_isin
from stdnum.exceptions import InvalidComponent, ValidationError

from core.isin import InvalidIsin, RowError, known_prefix, validate_isin


def by_the_rules(value: str) -> bool:
    """stdnum's verdict on a compact value, except that a letter prefix stdnum does not know is
    no error: the shape and the check digit decide (see core/isin.py)."""
    if value != stdnum_isin.compact(value):
        return False
    try:
        stdnum_isin.validate(value)
    except InvalidComponent:
        return value[:2].isalpha() and stdnum_isin.calc_check_digit(value[:-1]) == value[-1]
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("US0378331005", "US0378331005"),  # Apple
        ("DE0007236101", "DE0007236101"),  # Siemens
        ("  us0378331005 ", "US0378331005"),  # stdnum's compact form: upper case, no spaces
        ("XS2350756446", "XS2350756446"),  # XS: international securities
        ("QQ0001529908", "QQ0001529908"),  # a London Stock Exchange "QQ" code: a prefix stdnum does not know
        (" qq0001529908", "QQ0001529908"),  # the same through the slow path
    ],
)
def test_valid(value: str, expected: str) -> None:
    assert validate_isin(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "reason"),
    [
        ("US0378331006", RowError.INVALID_CHECK_DIGIT, "check digit is 6, expected 5"),
        ("ZZ0378331005", RowError.INVALID_CHECK_DIGIT, "check digit is 5, expected 1"),  # unknown prefix, checked
        ("120378331005", RowError.INVALID_COUNTRY, "'12' is not a country code"),
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


def test_known_prefixes_are_stdnum_s() -> None:
    assert known_prefix("US0378331005") and known_prefix("XS2350756446") and known_prefix("EU000A1G0BQ2")
    assert not known_prefix("QQ0001529908") and not known_prefix("ZZ0000000000")


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
                    assert _fast_valid(value) == by_the_rules(value), value
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
                    assert fast == by_the_rules(c), c
                    checked += 1
                    accepted += fast
    assert checked > 50_000 and 0 < accepted < checked


def test_the_fast_path_is_only_a_shortcut() -> None:
    # lower case and spaces are valid for stdnum but not compact: the slow path answers
    assert validate_isin(" US 0378 3310 05 ") == "US0378331005"
