"""Shared fixtures: where the real ISIN lists are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ISIN_PIPELINE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real lists, byte-exact as published (see PROVENANCE.txt there)."""
    data = SHARED / "data"
    if not (data / "PROVENANCE.txt").is_file():
        pytest.fail(f"the real ISIN lists are missing: expected them in {data} (../shared beside the repo)")
    return data


@pytest.fixture(scope="session")
def gleif_tool() -> Path:
    tool = SHARED / "tools" / "make_gleif_like.py"
    if not tool.is_file():
        pytest.fail(f"{tool} is missing (../shared beside the repo)")
    return tool
