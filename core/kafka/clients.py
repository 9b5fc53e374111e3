"""What every Kafka client of the pipeline agrees on: partitioning and record headers."""

from __future__ import annotations

from typing import Any


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a key as the Java client, aiokafka and Faust compute it (murmur2)."""
    from aiokafka.partitioner import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    """confluent-kafka's headers (a list of pairs, a dict, or None) as (name, bytes) pairs."""
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), v if isinstance(v, bytes) else (b"" if v is None else str(v).encode())) for k, v in pairs]
