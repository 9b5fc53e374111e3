"""Progress of a run: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

logger = logging.getLogger(__name__)


class RunProgress:
    """Bytes downloaded and rows published. Use as a context manager."""

    def __init__(self, source: str, interactive: bool | None = None, log_every_s: float = 10.0) -> None:
        self.source = source
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._log_every = log_every_s
        self._last_log = 0.0
        self._bar: Progress | None = None
        self._download: TaskID | None = None
        self._rows: TaskID | None = None

    def __enter__(self) -> RunProgress:
        if self.interactive:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[rows]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),  # stdout carries the JSON summary
                transient=False,
            )
            self._bar.start()
            self._download = self._bar.add_task("download", total=None, rows="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def on_bytes(self, done: int, total: int | None) -> None:
        if self._bar is not None and self._download is not None:
            self._bar.update(self._download, completed=done, total=total)
        elif self._due():
            of = f" of {total:,}" if total else ""
            logger.info("%s: downloaded %s%s bytes", self.source, f"{done:,}", of)

    def on_rows(self, rows: int) -> None:
        if self._bar is not None:
            if self._rows is None:
                self._rows = self._bar.add_task("publish", total=None, rows="")
            self._bar.update(self._rows, rows=f"{rows:,} rows")
        elif self._due():
            logger.info("%s: read and published %s rows", self.source, f"{rows:,}")

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_log >= self._log_every:
            self._last_log = now
            return True
        return False
