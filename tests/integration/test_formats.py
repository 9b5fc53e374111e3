"""Every real list format, with no hints, through the embedded broker and a worker into the table.

The expected figures are the samples' PROVENANCE.txt counts (distinct ISINs of valid shape and
check digit; the unit tests of each reader count them independently). The LSE workbook lists
20 bonds under "QQ" codes, a prefix python-stdnum does not know: published, and reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline

SAMPLES = {
    # name: (file, format, distinct valid ISINs in the table)
    "dbag": ("dbag_Listed-companies_20210801.xlsx", "xlsx", 503),
    "lse": ("lse_Instrument_list_20201031.xlsx", "xlsx", 16386),
    "gpw": ("gpw_archiwum-notowan_akcje_20220210.xls", "xls", 428),
    "nport": ("sec_nport-p_dupree_20221231.xml", "xml", 55),
    "kis": ("kis_konex_code.mst", "fixed", 119),
    "gleif": ("gleif_isins_851WYGNLUQLFZBSYGB56_20250515.json", "json", 15),
}


def test_every_sample_format_reaches_the_table_with_exact_counts(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    worker = pipeline.worker().start()
    worker.wait_healthy()
    events = markers = 0
    for name, (filename, fmt, _distinct) in SAMPLES.items():
        # served under a neutral name: the format comes from the bytes, not from the name
        served = tmp_path / f"{name}.download"
        shutil.copyfile(shared_data / "formats" / filename, served)
        result = pipeline.produce(list_server.add_file(f"{pipeline.suffix}-{name}", served), "--source-name", name)
        assert result.returncode == 0, (name, result.stderr)
        summary = result.summary
        assert summary is not None and summary["status"] == "succeeded", (name, summary)
        assert summary["layout"]["format"] == fmt, (name, summary["layout"])
        assert set(summary["unknown_prefixes"]) == ({"QQ"} if name == "lse" else set()), (name, summary)
        events += summary["published"]
        markers += pipeline.partitions
    pipeline.wait_processed(events, markers=markers, timeout=180)
    current = pipeline.current()
    for name, (_filename, _fmt, distinct) in SAMPLES.items():
        listed = [isin for isin, record in current.items() if any(lst["source"] == name for lst in record["listings"])]
        assert len(listed) == distinct, name
