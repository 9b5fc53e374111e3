"""Large lists in every format the producer streams, written from a real list, for bench.formats.

The real samples are small (the largest xlsx holds 34k rows), so their figures are dominated by
detection; these show the reading speed and, above all, that memory stays flat at size. Each
file holds the NSDL list's rows, repeated to ``rows``: real ISINs and names, not invented ones.
BIFF8 (.xls) is not written: no maintained library writes it, and the reader loads it whole
anyway (docs/reading.md).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from itertools import cycle, islice
from pathlib import Path
from xml.sax.saxutils import escape

NSDL = Path(__file__).resolve().parents[2] / "shared" / "data" / "nsdl_india-isin_ISIN_20240831.csv"


def _rows(rows: int) -> Iterator[tuple[str, str, str]]:
    with NSDL.open(newline="", encoding="utf-8") as f:
        real = [(r["ISIN"], r["Description"], r["Type"]) for r in csv.DictReader(f)]
    return islice(cycle(real), rows)


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["ISIN", "Description", "Type"])
        out.writerows(_rows(rows))


def write_xml(path: Path, rows: int) -> None:
    """The ISIN as element text, as in regulators' reference-data files."""
    with path.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<instruments>\n')
        for isin, name, kind in _rows(rows):
            f.write(
                f"<instrument><isin>{isin}</isin><name>{escape(name)}</name><type>{escape(kind)}</type></instrument>\n"
            )
        f.write("</instruments>\n")


def write_json(path: Path, rows: int) -> None:
    """An API envelope holding an array of objects."""
    with path.open("w", encoding="utf-8") as f:
        f.write('{"meta": {"source": "bench"}, "data": [\n')
        for i, (isin, name, kind) in enumerate(_rows(rows)):
            f.write(("," if i else "") + json.dumps({"isin": isin, "name": name, "type": kind}) + "\n")
        f.write("]}\n")


def write_fixed(path: Path, rows: int) -> None:
    """No header; the ISIN at bytes 9-20 after a record type and a sequence number."""
    with path.open("wb") as f:
        f.write(b"HD" + b"BENCH".ljust(78) + b"\n")
        for i, (isin, name, _kind) in enumerate(_rows(rows)):
            f.write(b"01" + str(i).zfill(6).encode() + isin.encode() + name.encode("utf-8")[:60].ljust(60) + b"\n")
        f.write(b"TR" + str(rows).zfill(78).encode() + b"\n")


def write_xlsx(path: Path, rows: int) -> None:
    """A title row above the header, as exchanges publish them (openpyxl's write-only mode)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Instruments")
    ws.append(["List of instruments"])
    ws.append([])
    ws.append(["ISIN", "Description", "Type"])
    for row in _rows(rows):
        ws.append(list(row))
    wb.save(path)


def write_html(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write("<html><body><table>\n<tr><th>ISIN</th><th>Description</th><th>Type</th></tr>\n")
        for isin, name, kind in _rows(rows):
            f.write(f"<tr><td>{isin}</td><td>{escape(name)}</td><td>{escape(kind)}</td></tr>\n")
        f.write("</table></body></html>\n")


WRITERS: dict[str, tuple[str, Callable[[Path, int], None]]] = {
    "csv (baseline)": ("list.csv", write_csv),
    "xml (element text)": ("list.xml", write_xml),
    "json (API envelope)": ("list.json", write_json),
    "fixed width": ("list.dat", write_fixed),
    "xlsx (title rows)": ("list.xlsx", write_xlsx),
    "html table": ("list.html", write_html),
}


def write_all(directory: Path, rows: int) -> dict[str, Path]:
    """Every large list, written to ``directory``; name -> path."""
    out = {}
    for name, (file_name, writer) in WRITERS.items():
        path = directory / file_name
        writer(path, rows)
        out[name] = path
    return out
