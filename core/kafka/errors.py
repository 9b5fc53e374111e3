"""librdkafka's and aiokafka's errors as the pipeline's own, each saying what to do."""

from __future__ import annotations

from typing import Any

from core.errors import BrokerError, PipelineError

_UNREACHABLE = ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_RESOLVE", "_AUTHENTICATION", "NETWORK_EXCEPTION")
_MISSING_TOPIC = ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "_UNKNOWN_PARTITION")


def _name(error: Any) -> str:
    """The error's name: a librdkafka KafkaError's ``name()``, or an aiokafka exception's class."""
    name = getattr(error, "name", None)
    if callable(name):
        return str(name())
    return type(error).__name__


def _text(error: Any) -> str:
    text = getattr(error, "str", None)
    return str(text()) if callable(text) else str(error)


def kafka_error(exc: BaseException, bootstrap: str | None, what: str) -> PipelineError:
    """One of our errors for a Kafka failure while doing ``what`` (``reading isin.runs``, ...).

    ``exc`` is a confluent-kafka ``KafkaException`` (its ``args[0]`` a ``KafkaError``) or an
    aiokafka error. A broker that cannot be reached and a missing topic get their own advice;
    anything else keeps librdkafka's words.
    """
    error: Any = exc.args[0] if exc.args and hasattr(exc.args[0], "code") else exc
    name = _name(error)
    if name in _UNREACHABLE or name in ("KafkaConnectionError", "NodeNotReadyError", "KafkaTimeoutError"):
        where = f" at {bootstrap}" if bootstrap else ""
        return BrokerError(f"cannot reach Kafka{where} ({what}): {_text(error)}")
    if name in _MISSING_TOPIC or name == "UnknownTopicOrPartitionError":
        return BrokerError(
            f"{what}: a topic is missing ({_text(error)}); create the pipeline's topics with "
            "`isin-pipeline topics create`"
        )
    return BrokerError(f"{what}: {name}: {_text(error)}")
