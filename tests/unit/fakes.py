"""In-memory stand-ins for the dedup loop's Kafka-facing parts (no broker in unit tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field


class DictTableStore:
    """The TableStore protocol over dicts."""

    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {}
        self.offsets: dict[int, int] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def reader(self, partition: int) -> Callable[[list[bytes]], list[bytes | None]]:
        part = self.data.setdefault(partition, {})
        return lambda keys: [part.get(key) for key in keys]

    def apply(self, partition: int, changes: Mapping[bytes, bytes | None], changelog_offset: int | None) -> None:
        part = self.data.setdefault(partition, {})
        for key, value in changes.items():
            if value is None:
                part.pop(key, None)
            else:
                part[key] = value
        if changelog_offset is not None:
            self.offsets[partition] = changelog_offset

    def items(self, partition: int, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        part = self.data.get(partition, {})
        for key in sorted(part):
            if key >= start:
                yield key, part[key]

    def count(self, partition: int) -> int:
        return len(self.data.get(partition, {}))


class ListOutput:
    """Collects what would be written to the current-records topic, with offsets."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, bytes | None]] = []
        self.dead: list[tuple[bytes | None, bytes]] = []
        self.changes: list[tuple[int, bytes, bytes]] = []
        self.index_records: list[tuple[int, bytes, bytes | None]] = []
        self._pending: set[int] = set()
        self._counts: dict[int, int] = {}
        self.flushes = 0

    def send(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.sent.append((partition, key, value))
        self._counts[partition] = self._counts.get(partition, 0) + 1
        self._pending.add(partition)

    def dead_letter(self, key: bytes | None, value: bytes) -> None:
        self.dead.append((key, value))

    def change(self, partition: int, key: bytes, value: bytes) -> None:
        self.changes.append((partition, key, value))

    def index(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.index_records.append((partition, key, value))

    async def flush(self) -> dict[int, int]:
        self.flushes += 1
        offsets = {partition: self._counts[partition] - 1 for partition in self._pending}
        self._pending.clear()
        return offsets


@dataclass
class RawRecord:
    """The attributes of an aiokafka ConsumerRecord the dedup loop reads."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FakeReindex:
    def __init__(self, answer: Iterable[bytes] | None) -> None:
        self.answer = answer
        self.calls: list[tuple[int, str, int, int]] = []

    async def __call__(self, partition: int, run_id: str, first: int, end: int) -> Iterable[bytes] | None:
        self.calls.append((partition, run_id, first, end))
        return self.answer
