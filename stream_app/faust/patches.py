"""The one process-wide patch of aiokafka: metadata requests never create topics."""

from __future__ import annotations

import functools


def forbid_auto_create_topics() -> None:
    """Make every metadata request of aiokafka's client (``AIOKafkaClient``, under every consumer
    and producer Faust builds) say ``allow_auto_topic_creation=false``; idempotent.

    Relies on: ``aiokafka.client`` building its requests with the module-level name
    ``MetadataRequest`` (``MetadataRequest(topics)``, client.py), whose ``build()`` sends True
    when the flag is not given. aiokafka 0.14 has no setting for it, and Faust none either, so
    without this a worker that meets a missing topic (an embedded broker restarted empty)
    would create it with the broker's default partition count and no configs. Not covered:
    aiokafka's admin client, which imports the name itself (the worker builds none), and
    Faust's own topic creation, which names no topics (and is off: ``topic_allow_declare``).
    """
    import aiokafka.client
    from aiokafka.protocol.metadata import MetadataRequest

    current = aiokafka.client.MetadataRequest
    if isinstance(current, functools.partial):
        return
    aiokafka.client.MetadataRequest = functools.partial(  # type: ignore[misc]
        MetadataRequest, allow_auto_topic_creation=False
    )
