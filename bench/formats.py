"""Reading speed and memory of every list format, on the real samples, against delimited text.

    python -m bench.formats [--out bench/results/formats.json]
    python -m bench.formats --large 300000 [--out bench/results/formats-large.json]


Each sample is read through ``producer.reading.ListFile`` (detection included) in a fresh
process, repeated until a second has passed, so that the figure is rows per second of the
reader alone (no Kafka). Peak memory is the process's VmHWM. Figures are printed as ratios to
the delimited-text baseline measured in the same run (the NSDL list), because absolute numbers
on a shared machine move by a quarter from run to run. ``--large N`` reads lists of N rows
written from a real one in each streamed format (bench/formats_large.py) instead: the speed at
size, and whether memory stays flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = {
    "csv (baseline)": SHARED / "nsdl_india-isin_ISIN_20240831.csv",
    "csv ';' with section lines": SHARED / "formats" / "amfi_NAVAll_2025.txt",
    "xlsx (15 sheets)": SHARED / "formats" / "lse_Instrument_list_20201031.xlsx",
    "xlsx (title rows)": SHARED / "formats" / "dbag_Listed-companies_20210801.xlsx",
    "xls (BIFF8)": SHARED / "formats" / "gpw_archiwum-notowan_akcje_20220210.xls",
    "xml (attribute)": SHARED / "formats" / "sec_nport-p_dupree_20221231.xml",
    "fixed width (cp949)": SHARED / "formats" / "kis_konex_code.mst",
    "json (API envelope)": SHARED / "formats" / "gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json",
}
HINTS = {"csv ';' with section lines": {"column": "ISIN Div Payout/ ISIN Growth"}}

CHILD = """
import json, sys, time
from pathlib import Path
from producer.reading import ListFile, ReadHints, Row
path, hints = Path(sys.argv[1]), ReadHints(**json.loads(sys.argv[2]))
rows = reads = 0
started = time.perf_counter()
while True:
    with ListFile(path, hints) as reader:
        for item in reader.rows():
            rows += isinstance(item, Row)
    reads += 1
    if time.perf_counter() - started >= 1.0:
        break
took = time.perf_counter() - started
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"rows": rows // reads, "reads": reads, "rows_per_s": rows / took, "peak_rss_mb": peak / 1024,
                  "format": reader.detected.format, "detected": reader.detected.as_dict()}, default=str))
"""


def measure(path: Path, hints: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(hints)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=ROOT,
    )
    return dict(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, metavar="ROWS", help="read lists of ROWS rows written from a real one")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.large:
        from bench.formats_large import write_all

        with tempfile.TemporaryDirectory(prefix="isin-formats-") as tmp:
            files = write_all(Path(tmp), args.large)
            results = {
                name: {**measure(path, {}), "mb": round(path.stat().st_size / 2**20, 1)} for name, path in files.items()
            }
        out = args.out or ROOT / "bench" / "results" / "formats-large.json"
    else:
        results = {name: measure(path, HINTS.get(name, {})) for name, path in SAMPLES.items()}
        out = args.out or ROOT / "bench" / "results" / "formats.json"
    base = results["csv (baseline)"]["rows_per_s"]
    print(f"{'sample':32} {'format':7} {'rows':>7} {'rows/s':>10} {'x csv':>6} {'peak MB':>8}")
    for name, r in results.items():
        r["x_csv"] = round(r["rows_per_s"] / base, 3)
        print(
            f"{name:32} {r['format']:7} {r['rows']:>7} {r['rows_per_s']:>10,.0f} {r['x_csv']:>6.2f} "
            f"{r['peak_rss_mb']:>8.1f}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
