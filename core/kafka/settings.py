"""Kafka connection settings shared by every side, and the client configs built from them.

``KafkaSettings`` is the base of each package's own settings object (``ProducerSettings``,
``StreamSettings``): it is read from the environment once, in the entry point. Security
settings are turned into the same meaning for confluent-kafka (librdkafka), aiokafka
(``ssl_context``, used by the stream app's Faust adapter) and the Schema Registry client,
in one place.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.logs import register_secret

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

DAY_MS = 24 * 3600 * 1000
RDKAFKA_LOGGER = logging.getLogger("librdkafka")


class KafkaSettings(BaseSettings):
    """Connection, security and topic settings. Environment names are the field names, upper-cased."""

    # An empty variable means "not set" (a Kubernetes Secret key left empty, say).
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_file=None, env_ignore_empty=True, allow_inf_nan=False
    )

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_client_id: str = "isin-pipeline"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    kafka_ssl_certificate_location: Path | None = None
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    kafka_connect_timeout_s: float = 10.0
    """How long a command waits for Kafka before it says it cannot reach it."""

    schema_registry_url: str | None = None
    schema_registry_basic_auth_user_info: SecretStr | None = None
    """``user:password`` for the Schema Registry's HTTP basic auth."""
    schema_registry_ssl_ca_location: Path | None = None

    topic_raw: str = "isin.events"
    topic_current: str = "isin.current"
    topic_dlq: str = "isin.dlq"
    topic_runs: str = "isin.runs"
    topic_changes: str = "isin.changes"
    """Every change of every source's listing (``ListingChange``), co-partitioned with the raw topic."""
    topic_identifiers: str = "isin.identifiers"
    """The identifier index: ``field=value|ISIN`` -> ISIN, partitioned by ``field=value``, compacted."""
    topic_partitions: int = 6
    """Partitions of the raw and current topics; they must be equal (co-partitioned)."""
    topic_replication_factor: int = 1
    topic_raw_retention_ms: int = 7 * DAY_MS
    topic_dlq_retention_ms: int = 30 * DAY_MS
    topic_changes_retention_ms: int = -1
    """The change topic is the pipeline's history: kept forever by default."""

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        proto = self.kafka_security_protocol
        sasl_complete = self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        if proto.startswith("SASL") and not sasl_complete:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={proto} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_certificate_location) != bool(self.kafka_ssl_key_location):
            raise ValueError("mTLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION")
        if self.topic_partitions < 1:
            raise ValueError("TOPIC_PARTITIONS must be at least 1")
        self._check_numbers()
        self._register_secrets()
        return self

    def _check_numbers(self) -> None:
        """No number setting without its own bounds may be negative (a retention may be -1:
        forever): a hostile or mistyped environment value fails at start, saying which."""
        for name, info in type(self).model_fields.items():
            value = getattr(self, name, None)
            if info.metadata or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if name.endswith("_retention_ms") and value == -1:
                continue
            if value < 0:
                raise ValueError(f"{name.upper()}={value}: must not be negative")

    def _register_secrets(self) -> None:
        """Every secret setting, of this class or a subclass, is masked in every log line."""
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, SecretStr):
                        register_secret(item.get_secret_value(), header=str(key))

    # -- confluent-kafka -------------------------------------------------------------

    def confluent_config(self) -> dict[str, Any]:
        """Connection and security properties for any confluent-kafka client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "client.id": self.kafka_client_id,
            "security.protocol": self.kafka_security_protocol.lower(),
            # librdkafka's own log lines go through logging (logger "librdkafka"), not raw stderr;
            # failures reach us through error callbacks and exceptions as well.
            "logger": RDKAFKA_LOGGER,
            # Topics are created by one explicit path (core.kafka.topics), never by a client's
            # metadata request: a restarted empty broker would get them with default counts.
            "allow.auto.create.topics": False,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            assert self.kafka_sasl_password is not None
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.uses_tls:
            if self.kafka_ssl_ca_location:
                conf["ssl.ca.location"] = str(self.kafka_ssl_ca_location)
            if self.kafka_ssl_certificate_location:
                conf["ssl.certificate.location"] = str(self.kafka_ssl_certificate_location)
                conf["ssl.key.location"] = str(self.kafka_ssl_key_location)
            if self.kafka_ssl_key_password:
                conf["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
            if not self.kafka_ssl_check_hostname:
                conf["ssl.endpoint.identification.algorithm"] = "none"
        return conf

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    # -- aiokafka, through Faust -------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka, equivalent to the librdkafka ``ssl.*`` properties."""
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.kafka_ssl_ca_location) if self.kafka_ssl_ca_location else None)
        ctx.check_hostname = self.kafka_ssl_check_hostname
        if self.kafka_ssl_certificate_location:
            password = self.kafka_ssl_key_password.get_secret_value() if self.kafka_ssl_key_password else None
            ctx.load_cert_chain(
                str(self.kafka_ssl_certificate_location),
                str(self.kafka_ssl_key_location),
                password=password,
            )
        return ctx

    # -- Schema Registry ---------------------------------------------------------------

    def schema_registry_config(self) -> dict[str, Any] | None:
        if not self.schema_registry_url:
            return None
        conf: dict[str, Any] = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth_user_info:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth_user_info.get_secret_value()
        if self.schema_registry_ssl_ca_location:
            conf["ssl.ca.location"] = str(self.schema_registry_ssl_ca_location)
        return conf

    def describe(self) -> dict[str, Any]:
        """A log-safe summary: no secrets, ever."""
        return {
            "bootstrap": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "schema_registry": bool(self.schema_registry_url),
            "topics": {
                "raw": self.topic_raw,
                "current": self.topic_current,
                "dlq": self.topic_dlq,
                "runs": self.topic_runs,
                "changes": self.topic_changes,
                "identifiers": self.topic_identifiers,
            },
            "partitions": self.topic_partitions,
        }
