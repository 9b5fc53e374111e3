"""Faust's partition assignor, sticky across restarts (``RestartStickyAssignor``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
from faust.assignor.partition_assignor import PartitionAssignor

logger = logging.getLogger(__name__)


class RestartStickyAssignor(PartitionAssignor):
    """Faust's assignor, sticky across restarts: a worker gets back the partitions whose state it
    keeps on disk, instead of a fresh deal that moves half of them to a worker that must then
    restore them from the changelog before it serves (seconds for nothing; with a large table,
    minutes).

    Faust's assignor keeps what each member reports it holds (``ClientMetadata.assignment`` in
    the member's subscription), but a restarted member reports nothing, and one left alone for
    a while (the others restarting one at a time) reports everything. This one saves its
    assignment in the state directory on every rebalance (alone, only while it has no saved
    share yet), and reports the saved share while it has no other (restarted) or holds
    everything alone: the cluster's assignor then gives each member back its share. A wiped
    state directory takes the file with it. Relies on: ``PartitionAssignor._metadata`` (the ClientMetadata that
    ``metadata()`` sends), ``_assignment``, ``changelog_distribution`` and ``on_assignment``.
    """

    FILE = "assignment.json"

    def __init__(self, app: Any, replicas: int = 0) -> None:
        super().__init__(app, replicas)
        self._saved_path = Path(app.conf.datadir) / self.FILE
        self._share: ClientAssignment | None = None  # the last share saved
        self._claiming = True  # restarted, or alone: report the share, not what it holds
        try:
            self._share = ClientAssignment.loads(self._saved_path.read_bytes())
        except FileNotFoundError:
            pass
        except Exception as exc:  # a damaged file costs stickiness, never a start
            logger.warning("ignoring the saved assignment %s: %s", self._saved_path, exc)

    @property
    def _metadata(self) -> ClientMetadata:
        metadata: ClientMetadata = super()._metadata
        if not self._claiming or self._share is None:
            return metadata
        return ClientMetadata(
            assignment=self._share,
            url=metadata.url,
            changelog_distribution=metadata.changelog_distribution,
            external_topic_distribution=metadata.external_topic_distribution,
            topic_groups=metadata.topic_groups,
        )

    def on_assignment(self, assignment: Any) -> None:
        super().on_assignment(assignment)
        self._claiming = len(self.changelog_distribution) < 2 and self._share is not None
        if self._claiming:
            return  # alone for now: keep claiming the share it had in the group
        self._share = self._assignment
        try:
            self._saved_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._saved_path.with_suffix(".tmp")
            tmp.write_bytes(self._share.dumps())
            tmp.replace(self._saved_path)
        except OSError as exc:
            logger.warning("could not save the assignment to %s: %s", self._saved_path, exc)
