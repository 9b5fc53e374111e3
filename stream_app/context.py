"""What the dedup loop and the HTTP API of one worker share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas import Serde
from schemas.fastcurrent import CurrentJson
from stream_app.conflicts import ConflictReport
from stream_app.dedup import Dedup
from stream_app.feed import Feed, HistoryReads, IndexReads
from stream_app.golden import Golden
from stream_app.metrics import StreamMetrics
from stream_app.output import OutputWriter
from stream_app.records import record_json
from stream_app.seen import SeenIndex
from stream_app.settings import StreamSettings
from stream_app.store import FaustTableStore


@dataclass
class StreamContext:
    """What the dedup loop and the HTTP API share; attached to the app as ``BatchingApp.isin`` (typed),
    read back with ``stream_app.faust.stream_context``."""

    settings: StreamSettings
    serde: Serde
    table: Any
    store: FaustTableStore
    dedup: Dedup
    output: OutputWriter
    seen: SeenIndex
    metrics: StreamMetrics
    history: Feed[HistoryReads] | None = None
    """This worker's history of its partitions, fed from the change topic."""
    index: Feed[IndexReads] | None = None
    """This worker's partitions of the identifier index, fed from the identifier topic."""
    golden: Golden | None = None
    """The golden configuration (``SOURCES_FILE``) the records are built under."""
    conflicts: ConflictReport | None = None
    """The conflicts of this worker's partitions (``/conflicts``, counts in ``/stats``)."""
    table_counts: Callable[[], dict[int, int]] = field(default=dict)
    """Records per partition this worker owns (set by the web module: kept without RocksDB walks)."""
    _current_json: CurrentJson = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._current_json = CurrentJson(self.serde)

    def record_json(self, raw: bytes) -> dict[str, Any]:
        """The JSON form (``records.record_json``) of a stored CurrentRecord: read straight from its
        Avro when it is of this version (``schemas.fastcurrent``), else decoded by the serde."""
        out = self._current_json(raw)
        return record_json(self.serde.decode(raw).record) if out is None else out
