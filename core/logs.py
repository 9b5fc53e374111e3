"""Logging set-up, called only by entry points. ``--log-format json`` writes one object a line."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# Libraries whose INFO lines are noise for operators of this pipeline.
_QUIET = ("faust", "mode", "aiokafka", "aiohttp.access", "httpx", "httpcore", "kafka")


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_URL_QUERY = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#\"']+)\?[^\s#\"']*")


def redact(text: str) -> str:
    """URLs without credentials or query strings (vendor feeds carry keys in both)."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _URL_QUERY.sub(r"\g<url>?***", text)


class RedactFilter(logging.Filter):
    """Redacts URL credentials and query strings from every record, ours and libraries' (httpx
    logs request URLs), before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", library_level: str = "WARNING") -> None:
    """Configure the root logger to write to stderr. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        for name in _QUIET:
            logging.getLogger(name).setLevel(library_level.upper())
        # Connection failures are reported once by our own error callbacks; librdkafka would
        # repeat them every few milliseconds.
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
