"""The partitions of many keys at once: Kafka's murmur2 (``core.kafka.clients.murmur2``) on numpy
arrays, for the producer's events, whose keys are valid ISINs of 12 bytes.

The producer gives each event its partition itself and queues a partition's events together:
librdkafka's ``produce_batch`` takes one partition per call. This must be the partition the
Java client, librdkafka's ``murmur2_random`` and Faust pick for the key, or an ISIN would move:
``tests/unit/test_kafka_layer.py`` compares it with ``partition_for`` key by key, and
``tests/integration/test_partitions.py`` with where librdkafka puts the same keys.
"""

from __future__ import annotations

import numpy as np

_M = np.uint32(0x5BD1E995)
_SEED = 0x9747B28C


def partitions_of(keys: bytes, width: int, partitions: int) -> np.ndarray:
    """The partition of each key of ``keys``: keys of ``width`` bytes (a multiple of 4), one
    after the other. ``(murmur2(key) & 0x7FFFFFFF) % partitions``, as ``partition_for``."""
    if width <= 0 or width % 4 or len(keys) % width:
        raise ValueError(f"keys of {width} bytes (a multiple of 4) expected, got {len(keys)} bytes")
    words = np.frombuffer(keys, dtype="<u4").reshape(-1, width // 4).astype(np.uint32)
    h = np.full(len(words), _SEED ^ width, dtype=np.uint32)
    for col in range(width // 4):  # uint32 arithmetic wraps around, as murmur2's does
        k = words[:, col] * _M
        k ^= k >> np.uint32(24)
        h = (h * _M) ^ (k * _M)
    h ^= h >> np.uint32(13)
    h *= _M
    h ^= h >> np.uint32(15)
    chosen: np.ndarray = (h & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)
    return chosen
