"""RestartStickyAssignor against the installed Faust: what it reports and what it saves."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from faust.assignor.partition_assignor import PartitionAssignor

from stream_app.faust import RestartStickyAssignor
from tests.unit.test_faust_contract import close, worker_app


def test_a_restarted_worker_claims_the_partitions_it_saved_and_alone_keeps_them_saved(tmp_path: Path) -> None:
    """RestartStickyAssignor: what it reports before its first assignment, and what it saves."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    from faust.assignor.client_assignment import ClientAssignment, ClientMetadata

    assert isinstance(inspect.getattr_static(PartitionAssignor, "_metadata"), property)
    assert "self._metadata.dumps()" in inspect.getsource(PartitionAssignor.metadata)
    saved = ClientAssignment(actives={"isin.events": [1, 3]}, standbys={"isin.current": [0, 2]})
    (tmp_path / RestartStickyAssignor.FILE).write_bytes(saved.dumps())
    app = worker_app(tmp_path)
    try:
        assignor = app.assignor
        assert isinstance(assignor, RestartStickyAssignor)
        assert assignor._metadata.assignment.actives == {"isin.events": [1, 3]}
        url = str(app.conf.canonical_url)

        def deliver(actives: dict[str, list[int]], hosts: list[str]) -> None:
            mine = ClientAssignment(actives=actives, standbys={})
            metadata = ClientMetadata(
                assignment=mine,
                url=url,
                changelog_distribution={h: {} for h in hosts},
                external_topic_distribution={},
                topic_groups={},
            )
            protocol = sorted(mine.kafka_protocol_assignment(app.tables))
            assignor.on_assignment(ConsumerProtocolMemberAssignment(0, protocol, assignor._compress(metadata.dumps())))

        def on_disk() -> Any:
            return ClientAssignment.loads((tmp_path / RestartStickyAssignor.FILE).read_bytes()).actives

        # left alone (the other worker restarting): it takes everything, but claims its share
        deliver({"isin.events": [0, 1, 2, 3]}, [url])
        assert on_disk() == saved.actives and assignor._metadata.assignment.actives == saved.actives
        # in a group of two it saves its share, and reports what it has
        deliver({"isin.events": [0, 2]}, [url, "http://other:6066"])
        assert on_disk() == {"isin.events": [0, 2]} and assignor._metadata.assignment.actives == {"isin.events": [0, 2]}
        deliver({"isin.events": [0, 1, 2, 3]}, [url])
        assert assignor._metadata.assignment.actives == {"isin.events": [0, 2]}
    finally:
        close(app)


def test_a_damaged_saved_assignment_costs_stickiness_not_a_start(tmp_path: Path) -> None:
    (tmp_path / RestartStickyAssignor.FILE).write_bytes(b"{not json")
    app = worker_app(tmp_path)
    try:
        assert app.assignor._metadata.assignment.actives == {}
    finally:
        close(app)
