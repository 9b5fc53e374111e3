"""The foundation floor of isin-pipeline.

Everything the producer and the stream app share, and nothing that knows about either:
Kafka settings, clients, topic admin and offsets (``core.kafka``), the error types
(``core.errors``), logging (``core.logs``), ISIN validation (``core.isin``) and the embedded
broker (``core.broker``). It imports only the standard library, third-party packages and
``schemas`` (the Avro serde, the floor below it).
"""
