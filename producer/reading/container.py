"""The download's container and format, from magic bytes: never from a file name or Content-Type.

A download is plain, gzip (by file or by ``Content-Encoding``), or a zip. A zip is either an
Office document (xlsx, xlsb, ods: the spreadsheet reader opens it) or an archive holding one
list. Decompressed bytes are counted against a limit (a zip bomb fails, it does not fill the
disk or the memory), and a truncated or corrupt archive is an error, never a shorter list:
gzip and zip carry their own length and checksum, so a stream that ends early is caught.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from core.errors import ParseError

HEAD_BYTES = 64 * 1024
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class _Counted(io.RawIOBase):
    """A decompressing stream that counts what it yields and turns codec failures into ParseError."""

    def __init__(self, inner: IO[bytes], limit: int, what: str, closers: list[Any]) -> None:
        self._inner = inner
        self._limit = limit
        self._what = what
        self._closers = closers
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except (zlib.error, EOFError, gzip.BadGzipFile, zipfile.BadZipFile) as exc:
            raise ParseError(f"broken or truncated {self._what}: {exc}") from exc
        except OSError as exc:
            raise ParseError(f"cannot read the {self._what}: {exc}") from exc
        n = len(data)
        self.count += n
        if self.count > self._limit:
            raise ParseError(
                f"the {self._what} unpacks to more than {self._limit} bytes (the limit, --max-bytes); "
                "a zip bomb, or raise the limit"
            )
        buffer[:n] = data
        return n

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer.close()
        super().close()


@dataclass
class Payload:
    """The list inside the download: how it was packed, and how to read it (again)."""

    container: str
    """``none``, ``gzip`` or ``zip``; ``office`` when the download itself is a zip-based workbook."""
    member: str | None
    head: bytes
    """The first bytes of the unpacked list: for magic bytes and sniffing."""
    open: Callable[[], BinaryIO]
    """A new buffered stream of the unpacked list, from its start, each call."""
    path: Path
    """A file holding the unpacked list: the download itself when it is not packed, else the
    list unpacked once into a temp file (an Office workbook: the download itself)."""
    self_delimiting: bool
    """The container proves where the list ends (a checksum or a directory at the end)."""


class Unpacker:
    """Opens a downloaded file; holds the temp files it makes until ``close()``."""

    def __init__(self, path: Path, max_bytes: int, spool_dir: str | None = None) -> None:
        self._path = path
        self._max = max_bytes
        self._spool_dir = spool_dir
        self._temps: list[Path] = []

    def close(self) -> None:
        for temp in self._temps:
            temp.unlink(missing_ok=True)
        self._temps.clear()

    def payload(self) -> Payload:
        try:
            with open(self._path, "rb") as f:
                magic = f.read(8)
        except OSError as exc:
            raise ParseError(f"cannot open the downloaded file: {exc.strerror}") from exc
        if magic.startswith(ZIP_MAGICS):
            return self._zip()
        if magic.startswith(GZIP_MAGIC):
            return self._with_head(
                Payload("gzip", None, b"", self._gzip_stream, self._path, self_delimiting=True), materialize=True
            )
        return self._with_head(Payload("none", None, b"", self._plain_stream, self._path, self_delimiting=False))

    # -- streams -----------------------------------------------------------------------

    def _plain_stream(self) -> BinaryIO:
        return open(self._path, "rb", buffering=1024 * 1024)

    def _gzip_stream(self) -> BinaryIO:
        raw = open(self._path, "rb")  # noqa: SIM115 - closed by _Counted
        inner: Any = gzip.GzipFile(fileobj=raw, mode="rb")
        return io.BufferedReader(_Counted(inner, self._max, "gzip file", [raw, inner]), 1024 * 1024)

    def _zip(self) -> Payload:
        try:
            archive = zipfile.ZipFile(self._path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ParseError(f"broken zip: {exc}") from exc
        with archive:
            names = set(archive.namelist())
            if "[Content_Types].xml" in names or "mimetype" in names:
                return Payload("office", None, b"PK\x03\x04", self._plain_stream, self._path, self_delimiting=True)
            files = [i for i in archive.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if len(files) != 1:
                shown = ", ".join(i.filename for i in files[:5]) or "none"
                raise ParseError(f"a zip must hold exactly one file, this one holds {len(files)}: {shown}")
            info = files[0]
            if info.file_size > self._max:
                raise ParseError(
                    f"{info.filename} in the zip unpacks to {info.file_size} bytes, more than the limit of {self._max}"
                )

        def open_member() -> BinaryIO:
            zf = zipfile.ZipFile(self._path)
            try:
                member = zf.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                zf.close()
                raise ParseError(f"broken zip: cannot open {info.filename}: {exc}") from exc
            counted = _Counted(member, self._max, f"zip member {info.filename}", [zf, member])
            return io.BufferedReader(counted, 1024 * 1024)

        return self._with_head(
            Payload("zip", info.filename, b"", open_member, self._path, self_delimiting=True), materialize=True
        )

    def _with_head(self, payload: Payload, materialize: bool = False) -> Payload:
        with payload.open() as stream:
            head = stream.read(HEAD_BYTES)
        payload.head = head
        if materialize:
            # A packed list is unpacked once, into a temp file: the readers read it more than once
            # (the encoding, the sample, the rows), and the parallel reader cuts it in byte ranges;
            # a workbook inside a gzip or a zip needs a file it can seek.
            payload.path = self._spool(payload.open)
            if head.startswith(ZIP_MAGICS):
                nested = Unpacker(payload.path, self._max, self._spool_dir)
                try:  # a workbook is not unpacked; any other member would be, into a temp file
                    inner = nested.payload()
                finally:
                    nested.close()
                if inner.container != "office":
                    raise ParseError("a zip inside a packed download: unpack it once, not twice")
                payload.container = f"{payload.container}+office"
            payload.open = self._opener(payload.path)
        return payload

    def _spool(self, open_stream: Callable[[], BinaryIO]) -> Path:
        fd, name = tempfile.mkstemp(prefix="isin-list-", suffix=".unpacked", dir=self._spool_dir)
        path = Path(name)
        self._temps.append(path)
        with os.fdopen(fd, "wb") as out, open_stream() as stream:
            shutil.copyfileobj(stream, out, 1024 * 1024)
        return path

    @staticmethod
    def _opener(path: Path) -> Callable[[], BinaryIO]:
        return lambda: open(path, "rb", buffering=1024 * 1024)


def sniff(head: bytes) -> str | None:
    """The format the first bytes of an unpacked list announce, if they announce one.

    ``xls`` (OLE2), ``office`` (a zip-based workbook), ``xml``, ``html`` or ``json``; None for
    text, whose kind (delimited, fixed width, one ISIN a line) is decided from its rows.
    """
    if head.startswith(OLE2_MAGIC):
        return "xls"
    if head.startswith(ZIP_MAGICS):
        return "office"
    text = head
    for bom in BOMS:
        if text.startswith(bom):
            if bom != BOMS[0]:
                text = head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
            else:
                text = text[len(bom) :]
            break
    start = text.lstrip()[:512].lower()
    # HTML exports saved as .xls often start right at <table> or <meta>, with no <html> at all.
    html_starts = (b"<!doctype html", b"<html", b"<table", b"<meta", b"<body", b"<head")
    if start.startswith(html_starts) or (start.startswith(b"<") and b"<html" in text[:4096].lower()):
        return "html"
    if start.startswith(b"<"):
        return "xml"
    if start.startswith((b"{", b"[")):
        return "json"
    return None
