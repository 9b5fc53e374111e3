"""ISIN validation with python-stdnum: format, length, country code and check digit."""

from __future__ import annotations

from enum import StrEnum

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
    INVALID_CHECK_DIGIT = "INVALID_CHECK_DIGIT"
    MISSING_ISIN = "MISSING_ISIN"
    MALFORMED_ROW = "MALFORMED_ROW"


class InvalidIsin(ValueError):
    """A value that is not a valid ISIN, with the kind of error and a reason for humans."""

    def __init__(self, error: RowError, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


def validate_isin(value: str) -> str:
    """The ISIN in its compact form (upper case, no spaces), or raise InvalidIsin."""
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
    except InvalidComponent:
        compact = stdnum_isin.compact(text)
        raise InvalidIsin(RowError.INVALID_COUNTRY, f"{compact}: unknown country code {compact[:2]!r}") from None
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
