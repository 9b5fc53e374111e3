"""An adversarial review of the sources file's reload on a running scheduler and a real broker:
whatever the file turns into, the scheduler refuses it with a reason, keeps the last good file
in force, and goes on running its sources (it neither dies nor freezes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline, wait_for

DONE = ("SUCCEEDED", "UNCHANGED", "SUSPICIOUS")
REFUSED = "the last good one stays in force"


def test_a_hostile_reload_is_refused_and_the_scheduler_keeps_running(
    pipeline: Pipeline, list_server: ListServer, shared_data: Path, tmp_path: Path
) -> None:
    pipeline.extra_env["SCHEDULER_RELOAD_POLL_S"] = "0.5"
    url = list_server.add_file("nse.csv", shared_data / "nse_EQUITY_L.csv")
    good = f'[sources.nse]\nurl = "{url}"\nevery = "3s"\n'
    sources = tmp_path / "sources.toml"
    sources.write_text(good)
    sched = pipeline.spawn("s", "schedule", "--sources", str(sources)).start()

    def runs_since(when: float) -> list[dict[str, object]]:
        return [
            r
            for r in pipeline.runs()
            if r["source"] == "nse" and r["status"] in DONE and r["started_at"].timestamp() > when  # type: ignore[attr-defined]
        ]

    def refusals() -> int:
        return sched.log.read_text(errors="replace").count(REFUSED)

    wait_for("the first run", lambda: runs_since(0), 60, interval=0.5)
    hostile = {
        "a cron with a seconds field (a run every second)": good.replace('every = "3s"', 'cron = "* * * * * *"'),
        "values nested too deeply": good + "headers = " + "{a=" * 3000 + "'1'" + "}" * 3000 + "\n",
        "a header that would add a line": good + 'headers = { "X-A\\r\\nX-B" = "v" }\n',
    }
    for what, text in hostile.items():
        before = refusals()
        sources.write_text(text)
        wait_for(f"the refusal of {what}", lambda b=before: refusals() > b, 20)  # type: ignore[misc]
        assert sched.alive(), what
    # a FIFO where the file was: reading it would block the scheduler's one loop for good
    before = refusals()
    sources.unlink()
    os.mkfifo(sources)
    wait_for("the refusal of a FIFO", lambda: refusals() > before, 20)
    log = sched.log.read_text(errors="replace")
    assert "five fields (minute hour day month weekday)" in log
    assert "values nested too deeply" in log and "not a header name" in log and "not a regular file" in log
    refused = time.time()
    wait_for("the last good file's source to run on", lambda: runs_since(refused), 30, interval=0.5)
    assert sched.alive()
    assert sched.stop() == 0
