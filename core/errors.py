"""The errors isin-pipeline raises, each saying what failed and what to do.

    PipelineError
    ├── ConfigError        a setting or argument is wrong; fix the configuration
    ├── BrokerError        Kafka is unreachable, or a topic is missing or misconfigured
    ├── SourceError        the list could not be downloaded (HTTP status, timeout, size, truncation)
    ├── ParseError         the downloaded file cannot be read as an ISIN list
    └── PublishError       records were not acknowledged by Kafka; the run did not complete

Row-level problems (a bad check digit, a short row) are not exceptions: those rows go to the
dead-letter topic and the run goes on.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error that ends a command with a one-line reason."""

    exit_code = 1
    summary: object | None = None
    """The summary of the run that failed, when a run had started."""


class ConfigError(PipelineError):
    exit_code = 2


class BrokerError(PipelineError):
    pass


class SourceError(PipelineError):
    pass


class ParseError(PipelineError):
    pass


class PublishError(PipelineError):
    pass
