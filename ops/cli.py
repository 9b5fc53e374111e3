"""The operator tools' subcommands: ``tail``, ``snapshot``, ``history``, ``changes``, ``lookup``,
``conflicts``, ``replay``, ``rebuild``."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ops import downstream, golden, history, rebuild, replay

    downstream.add_parsers(sub)
    history.add_parsers(sub)
    golden.add_parsers(sub)
    replay.add_parser(sub)
    rebuild.add_parser(sub)
