"""Instants given on the command line."""

from __future__ import annotations

from datetime import UTC, datetime

from core.errors import ConfigError


def parse_timestamp(text: str) -> datetime:
    """ISO-8601; a time without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"bad timestamp {text!r}: expected ISO-8601, e.g. 2026-11-22T07:15:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
