"""ISIN validation with python-stdnum: format, length and check digit; the prefix is reported.

An ISIN (ISO 6166) is two letters, nine letters or digits, and a check digit. The two letters
are a country code or a code that ANNA or a numbering agency gives (``XS``, ``EU``, ``QS`` …).
python-stdnum also checks them against its own list of prefixes, which lags the agencies: the
London Stock Exchange lists bonds under ``QQ`` codes with a right check digit that stdnum
refuses. A list is mirrored as its publisher ships it, so an ISIN of the right shape and check
digit is valid whatever its prefix; ``known_prefix`` says whether stdnum knows the prefix, and
the producer counts, logs and reports the ones it does not (``unknown_prefixes`` in the run
summary). Two characters that are not letters are no prefix at all: ``INVALID_COUNTRY``.

stdnum is the authority for the rest. Its ``isin.validate`` costs about 7.6 µs a call here,
half of the producer's CPU time on a GLEIF-sized list (see docs/performance.md),
so valid ISINs take a fast path that applies the same rules with C-level string operations:

- the format (two letters, nine letters or digits, one digit) by one compiled regex;
- the check digit by the Luhn sum over the digits (A=10 ... Z=35), summed with ``bytes``
  tables instead of a Python loop.

Anything the fast path does not accept goes to stdnum, which decides and gives the reason.
``tests/unit/test_validate.py`` checks that both agree on every ISIN of the real lists and on
hundreds of thousands of generated near-misses.
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from functools import cache

from stdnum import isin as stdnum_isin
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)


class RowError(StrEnum):
    """Why a row was dead-lettered; the symbols of the DeadLetter schema's ``error`` enum."""

    INVALID_FORMAT = "INVALID_FORMAT"
    INVALID_LENGTH = "INVALID_LENGTH"
    INVALID_COUNTRY = "INVALID_COUNTRY"
    """The first two characters are not letters (an unknown pair of letters is valid: see above)."""
    INVALID_CHECK_DIGIT = "INVALID_CHECK_DIGIT"
    MISSING_ISIN = "MISSING_ISIN"
    MALFORMED_ROW = "MALFORMED_ROW"


class InvalidIsin(ValueError):
    """A value that is not a valid ISIN, with the kind of error and a reason for humans."""

    def __init__(self, error: RowError, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SHAPE = re.compile(r"[A-Z]{2}[A-Z0-9]{9}[0-9]")
# Letters become their two-digit values; digits stay.
_TO_DIGITS = str.maketrans({c: str(i) for i, c in enumerate(_ALPHABET) if i >= 10})
# A digit at a doubled position contributes the digit sum of twice its value: 7 -> 14 -> 5.
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


@cache
def known_prefixes() -> frozenset[str]:
    """The two-letter prefixes python-stdnum knows: ISO 3166 countries and agencies' codes."""
    known = set()
    for a in string.ascii_uppercase:
        for b in string.ascii_uppercase:
            try:
                stdnum_isin.validate(stdnum_isin.from_natid(a + b, "0"))
            except InvalidComponent:
                continue
            except ValidationError:
                pass  # not a prefix problem
            known.add(a + b)
    return frozenset(known)


def known_prefix(isin: str) -> bool:
    """Whether python-stdnum knows the prefix of this (valid, compact) ISIN."""
    return isin[:2] in known_prefixes()


def _fast_valid(text: str) -> bool:
    """True only if ``text`` is a valid ISIN in compact form: shape and check digit."""
    if len(text) != 12 or _SHAPE.fullmatch(text) is None:
        return False
    digits = text.translate(_TO_DIGITS).encode()[::-1]  # rightmost (the check digit) first
    kept, doubled = digits[0::2], digits[1::2]
    total = sum(kept) + sum(doubled.translate(_DOUBLED)) - 48 * len(digits)
    return total % 10 == 0


def is_isin(value: str) -> bool:
    """Whether ``value``, stripped and upper-cased, is a valid ISIN (for detecting ISIN columns)."""
    text = value.strip()
    return len(text) == 12 and _fast_valid(text.upper())


def validate_isin(value: str) -> str:
    """The ISIN in its compact form (upper case, no spaces), or raise InvalidIsin."""
    if _fast_valid(value):
        return value
    return _validate_slow(value)


def _validate_slow(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidIsin(RowError.MISSING_ISIN, "the ISIN column is empty")
    try:
        return str(stdnum_isin.validate(text))
    except InvalidChecksum:
        compact = stdnum_isin.compact(text)
        expected = stdnum_isin.calc_check_digit(compact[:-1])
        raise InvalidIsin(
            RowError.INVALID_CHECK_DIGIT,
            f"{compact}: check digit is {compact[-1]}, expected {expected}",
        ) from None
    except InvalidComponent:  # a prefix stdnum does not know: valid if it is letters and the check digit is right
        compact = stdnum_isin.compact(text)
        if not compact[:2].isalpha() or not compact[:2].isascii():
            raise InvalidIsin(
                RowError.INVALID_COUNTRY, f"{compact}: {compact[:2]!r} is not a country code (two letters)"
            ) from None
        expected = stdnum_isin.calc_check_digit(compact[:-1])
        if compact[-1] != expected:
            raise InvalidIsin(
                RowError.INVALID_CHECK_DIGIT,
                f"{compact}: check digit is {compact[-1]}, expected {expected}",
            ) from None
        return str(compact)
    except InvalidLength:
        compact = stdnum_isin.compact(text)
        raise InvalidIsin(
            RowError.INVALID_LENGTH,
            f"{_shorten(text)!r}: {len(compact)} characters, an ISIN has 12",
        ) from None
    except InvalidFormat:
        raise InvalidIsin(
            RowError.INVALID_FORMAT,
            f"{_shorten(text)!r}: an ISIN has only the letters A-Z and digits 0-9",
        ) from None
    except ValidationError as exc:  # any future stdnum error kind
        raise InvalidIsin(RowError.INVALID_FORMAT, f"{_shorten(text)!r}: {exc}") from None


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
