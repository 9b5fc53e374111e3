"""The one Kafka access layer: settings, clients, topics, offsets and reading topics to their end."""

from core.kafka.clients import header_pairs, new_admin, new_consumer, new_producer, partition_for
from core.kafka.settings import KafkaSettings

__all__ = ["KafkaSettings", "header_pairs", "new_admin", "new_consumer", "new_producer", "partition_for"]
