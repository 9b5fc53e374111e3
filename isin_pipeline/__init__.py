"""isin-pipeline: daily ISIN lists into Kafka, deduplicated into a queryable, compacted table.

This package holds what the producer and the stream app share: Kafka settings and client
configs, topic definitions, the embedded broker, logging set-up and the command line.
"""

__version__ = "0.1.0"
