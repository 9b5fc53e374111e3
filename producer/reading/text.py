"""The encoding of a text list, decided over the whole file, and decoding that never guesses.

In this order: the configured encoding (``--encoding``); a byte order mark; UTF-8 if the whole
file is valid UTF-8; otherwise a legacy encoding detected by charset-normalizer from every line
that has non-ASCII bytes (not from the first kilobytes: a cp1252 quote can sit on the last line).
Whichever it is, the whole file is then checked to decode with it, strictly, before a row is
published: bytes that do not decode fail the run with the line they are on. Nothing is ever
replaced by U+FFFD or read as a C1 control character.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from core.errors import ParseError

CHUNK = 1024 * 1024
SAMPLE_LIMIT = 256 * 1024
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Encoding:
    name: str
    """A Python codec name; decoding with it skips the byte order mark."""
    by: str
    """How it was chosen, for the summary."""


def resolve_encoding(open_stream: Callable[[], BinaryIO], head: bytes, configured: str | None) -> Encoding:
    """The list's encoding, checked over the whole file (see the module's docstring)."""
    if configured:
        try:
            name = codecs.lookup(configured).name
        except LookupError:
            raise ParseError(f"--encoding {configured!r}: no such encoding") from None
        check_decodes(open_stream, name, f"the configured encoding {configured}")
        return Encoding(name, "configured")
    for bom, name in _BOMS:
        if head.startswith(bom):
            check_decodes(open_stream, name, f"{name} (it starts with a byte order mark)")
            return Encoding(name, "byte order mark")
    failure = first_undecodable(open_stream, "utf-8")
    if failure is None:
        return Encoding("utf-8", "the whole file is UTF-8")
    line, detail = failure
    sample, lines = _non_ascii_lines(open_stream)
    legacy = _detect_legacy(sample)
    if legacy is None:
        raise ParseError(
            f"line {line} is not UTF-8 ({detail}) and no other encoding fits the file; set --encoding "
            "(or the source's 'encoding')"
        )
    check_decodes(open_stream, legacy, f"{legacy} (detected: line {line} is not UTF-8)")
    return Encoding(legacy, f"detected by charset-normalizer from {lines} lines with non-ASCII bytes")


def first_undecodable(open_stream: Callable[[], BinaryIO], name: str) -> tuple[int, str] | None:
    """(line, reason) of the first bytes of the stream that do not decode with ``name``, or None."""
    decoder = codecs.getincrementaldecoder(name)(errors="strict")
    lines = 1
    with open_stream() as stream:
        while True:
            chunk = stream.read(CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                before = bytes(exc.object[: exc.start]).decode(name, errors="replace")
                bad = bytes(exc.object[exc.start : exc.end]).hex(" ")
                return lines + before.count("\n"), f"bytes {bad}: {exc.reason}"
            lines += text.count("\n")
            if final:
                return None


def check_decodes(open_stream: Callable[[], BinaryIO], name: str, what: str) -> None:
    failure = first_undecodable(open_stream, name)
    if failure is not None:
        line, detail = failure
        raise ParseError(
            f"line {line} does not decode as {what}: {detail}; nothing was published. "
            "Set the right --encoding (or the source's 'encoding')"
        )


def _non_ascii_lines(open_stream: Callable[[], BinaryIO]) -> tuple[bytes, int]:
    """Lines with non-ASCII bytes from the whole file, up to SAMPLE_LIMIT bytes of them."""
    found: list[bytes] = []
    size = 0
    carry = b""
    with open_stream() as stream:
        while size < SAMPLE_LIMIT:
            chunk = stream.read(CHUNK)
            if not chunk:
                data, carry = carry, b""
            else:
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            for line in data.split(b"\n"):
                if not line.isascii():
                    found.append(line)
                    size += len(line) + 1
            if not chunk:
                break
    return b"\n".join(found), len(found)


# The encodings publishers of lists use, most common first. Detection is restricted to them
# (charset-normalizer calls a short cp1251 sample mac_greek otherwise), and among those that
# decode the sample to the same text, the most common is named.
LEGACY = (
    "cp1252",
    "cp1251",
    "cp1250",
    "latin_1",
    "iso8859_15",
    "iso8859_2",
    "cp1253",
    "cp1254",
    "cp1257",
    "koi8_r",
    "cp949",
    "euc_kr",
    "cp932",
    "shift_jis",
    "euc_jp",
    "gb18030",
    "big5",
    "cp1255",
    "cp1256",
    "cp874",
)


def _detect_legacy(sample: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(sample, cp_isolation=list(LEGACY)).best()
    if best is None:
        return None
    same_text = set(best.could_be_from_charset) | {best.encoding}
    name = next((enc for enc in LEGACY if enc in same_text), best.encoding)
    return codecs.lookup(name).name
