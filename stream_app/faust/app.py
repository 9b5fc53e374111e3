"""The Faust app subclass the worker runs: its transport's consumer is the batching one, and it
carries the worker's ``StreamContext`` as a typed attribute."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream_app.faust.consumer import BatchHandler, BatchingConsumer, StandbyHandler

if TYPE_CHECKING:  # stream_app.context imports the dedup loop and the store: imports point down to here
    from stream_app.context import StreamContext


class BatchingTransport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer


class BatchingApp(faust.App):
    """faust.App whose consumer hands registered topics to batch handlers."""

    logger = logging.getLogger("faust.app.base")

    batch_handlers: dict[str, BatchHandler]
    standby_handlers: dict[str, StandbyHandler]
    end_offset_check_conf: dict[str, Any] | None = None
    highwater_check: Callable[[dict[tuple[str, int], int]], None] | None = None
    """Called (in an executor) with the end offsets Faust's recovery is about to check the local
    tables against, before it does: the worker restarts in place there if the broker lost data."""
    isin: StreamContext | None = None
    """What the dedup loop and the HTTP API of this worker share (set by ``create_app``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers = {}
        self.standby_handlers = {}

    def _new_transport(self) -> Any:
        # Relies on: faust.App._new_transport() building the transport, whose Consumer class
        # attribute is the consumer it creates.
        return BatchingTransport(self.conf.broker_consumer, self)

    def standby_topic(self, topic: Any, handler: StandbyHandler) -> None:
        """Hand the fetched batches of ``topic``'s standby partitions (a table's changelog) to
        ``handler`` instead of Faust's one-event-at-a-time standby path."""
        for name in topic.topics:
            self.standby_handlers[name] = handler

    def batch_topic(self, topic: Any, handler: BatchHandler) -> None:
        """Subscribe to ``topic`` (a faust Topic) and hand its records to ``handler`` in batches."""
        for name in topic.topics:
            self.batch_handlers[name] = handler
        self.topics.add(topic)


def stream_context(app: BatchingApp) -> StreamContext:
    """The ``StreamContext`` that ``create_app`` attached to ``app`` (typed, for Faust's views,
    whose ``self.app`` is untyped); a RuntimeError before it did."""
    ctx = app.isin
    if ctx is None:
        raise RuntimeError("the worker's StreamContext is not attached yet: create_app sets BatchingApp.isin")
    return ctx
