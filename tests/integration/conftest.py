"""Integration fixtures: one broker for the session, private topics for each test.

The broker is ``KAFKA_BOOTSTRAP_SERVERS`` when it is set (any Kafka), else the embedded
broker (tansu) started on a free loopback port for this session and stopped at its end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.broker import EmbeddedBroker, wait_until_ready
from tests.integration.httpd import ListServer
from tests.integration.support import Pipeline

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        wait_until_ready(external, 30)
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def embedded_broker_only(kafka_bootstrap: str) -> str:
    """For tests of the embedded broker's own quirks: they do not apply to an external Kafka."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("this test is about the embedded broker (tansu); KAFKA_BOOTSTRAP_SERVERS points elsewhere")
    return kafka_bootstrap


@pytest.fixture(scope="session")
def list_server(shared_data: Path) -> Iterator[ListServer]:
    server = ListServer(shared_data)
    yield server
    server.close()


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, uuid.uuid4().hex[:10], tmp_path)
    yield p
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for proc in [*p.workers, *p.procs]:
            print(f"\n----- log of {proc.name} (pid {proc.proc.pid if proc.proc else None}) -----")
            print(proc.tail())
    p.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
