"""Logging set-up, called only by entry points. ``--log-format json`` writes one object a line.

Every line that reaches a handler set up here is redacted as a whole, after formatting, so the
rule holds for our own lines, for every library's (httpx, httpcore, urllib3, aiohttp,
aiokafka, librdkafka through its log callback) and for tracebacks: no URL's user info or query
values, no ``Authorization``, ``Cookie`` or API-key header value, and no value registered with
``register_secret`` (configured secret headers, passwords, tokens).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# Libraries whose INFO lines are noise for operators of this pipeline.
_QUIET = ("faust", "mode", "aiokafka", "aiohttp.access", "httpx", "httpcore", "kafka")

MASK = "***"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_URL_QUERY = re.compile(r"(?P<url>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#\"']+)\?[^\s#\"'>)\]]*")
# A relative reference with a query (``Location: /list.csv?token=…``, httpcore's
# ``(b'Location', b'/list.csv?token=…')``): a path, then ``?`` and at least one ``name=``.
_PATH_QUERY = re.compile(r"(?P<path>(?:^|(?<=[\s'\"(=:,]))[^\s'\"?#]*)\?(?=[^\s#'\"=&]*=)[^\s#\"'>)\]]*")
# A secret header's value in the shapes libraries print headers: ``Name: value``,
# ``'Name': 'value'``, ``(b'Name', b'value')``; names compared without case.
_SECRET_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "private-token",
)
_MIN_SECRET = 4  # shorter registered values would mask ordinary words
_secrets: set[str] = set()
_secret_headers: set[str] = set(_SECRET_HEADERS)
_lock = threading.Lock()
_header_re: re.Pattern[str] | None = None
_secret_re: re.Pattern[str] | None = None


def register_secret(value: str | None, header: str | None = None) -> None:
    """Mask ``value`` in every log line from now on (and, with ``header``, every value of that
    header). Entry points call it for configured secrets: source headers, passwords, tokens."""
    global _header_re, _secret_re
    with _lock:
        if header:
            _secret_headers.add(header.lower())
            _header_re = None
        if value and len(value) >= _MIN_SECRET and value not in _secrets:
            _secrets.add(value)
            _secret_re = None


def _patterns() -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    global _header_re, _secret_re
    with _lock:
        if _header_re is None:
            names = "|".join(sorted((re.escape(h) for h in _secret_headers), key=len, reverse=True))
            _header_re = re.compile(
                rf"(?P<name>\b(?:{names}))(?P<sep>['\"]?\s*[:,=]\s*(?:b(?=['\"]))?['\"]?)(?P<value>[^'\"\r\n)\]}}]+)",
                re.IGNORECASE,
            )
        if _secret_re is None and _secrets:
            ordered = sorted(_secrets, key=len, reverse=True)
            _secret_re = re.compile("|".join(re.escape(s) for s in ordered))
        return _header_re, _secret_re


def redact(text: str) -> str:
    """``text`` without URL credentials, query strings, secret header values or registered secrets."""
    header_re, secret_re = _patterns()
    if secret_re is not None:
        text = secret_re.sub(MASK, text)
    text = _URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)
    text = _URL_QUERY.sub(rf"\g<url>?{MASK}", text)
    text = _PATH_QUERY.sub(rf"\g<path>?{MASK}", text)
    return header_re.sub(rf"\g<name>\g<sep>{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then redacts the whole line, traceback included."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, each string field redacted."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                if isinstance(value, int | float | bool | None):
                    out[key] = value
                else:
                    out[key] = redact(value if isinstance(value, str) else repr(value))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", library_level: str = "WARNING") -> None:
    """Configure the root logger to write to stderr. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())  # redacts each field: a masked line stays valid JSON
    else:
        text = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        handler.setFormatter(RedactingFormatter(text))
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


def logging_setup() -> tuple[str, str, str]:
    """The (level, format, library level) ``setup_logging`` was last given, as near as the root
    logger tells: for a child process to log as its parent does."""
    root = logging.getLogger()
    fmt = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "text"
    library = logging.getLogger(_QUIET[0]).level or logging.WARNING
    return logging.getLevelName(root.level), fmt, logging.getLevelName(library)
