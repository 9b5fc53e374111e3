"""Reader hints given by hand (``--column``, ``--isin-at`` …, or a sources file's keys), each
checked on its own before any download: ``HintFields``, and ``read_hints`` for the flags."""

from __future__ import annotations

import codecs
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import ConfigError
from producer.reading import ReadHints
from producer.reading.model import Format


class HintFields(BaseModel):
    """The reader-hint keys; a scheduled source's keys (``scheduler.spec.SourceFields``) add the rest."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Format | None = None
    column: str | None = None
    isin_at: tuple[int, int] | None = None
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    header_row: int | None = Field(default=None, ge=0)

    @field_validator("column", "sheet", mode="before")
    @classmethod
    def _name_or_index(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"{value}: an index is 1-based")
            return str(value)
        return value

    @field_validator("isin_at", mode="before")
    @classmethod
    def _isin_at(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            first, last = (int(x) for x in value.split(":"))
        except ValueError:
            raise ValueError(
                f"{value!r}: expected START:END, 1-based inclusive byte positions, e.g. '231:242'"
            ) from None
        if first < 1 or last - first + 1 != 12:
            raise ValueError(f"{value!r}: an ISIN is 12 bytes: START:END with END = START + 11, START at least 1")
        return (first, last)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        value = value.replace("\\t", "\t")
        if len(value) != 1:
            raise ValueError(f"{value!r}: one character")
        return value

    def hints(self) -> ReadHints:
        return ReadHints(
            format=self.format,
            column=self.column,
            isin_at=self.isin_at,
            encoding=self.encoding,
            delimiter=self.delimiter,
            sheet=self.sheet,
            header_row=self.header_row,
        )


def read_hints(**values: Any) -> ReadHints:
    """Reader hints from the command line's flags (``isin_at="231:242"``), checked as in a sources file."""
    try:
        return HintFields.model_validate({k: v for k, v in values.items() if v is not None}).hints()
    except ValidationError as exc:
        flags = []
        for error in exc.errors():
            name = "--" + str(error["loc"][0]).replace("_", "-") if error["loc"] else "hints"
            flags.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("; ".join(flags)) from None
