"""Where tables go: stdout, as wide as the terminal, or 200 columns when piped."""

from __future__ import annotations

import sys

from rich.console import Console


def table_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=200)
