"""Hostile or mistyped environment values fail at start, saying which setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler.settings import SchedulerSettings
from stream_app.settings import StreamSettings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RUN_TIMEOUT_S", "-1"),  # every claim would be dead at once: runs would fence each other
        ("HTTP_MAX_BYTES", "-1"),
        ("HTTP_DEADLINE_S", "inf"),
        ("HTTP_DEADLINE_S", "nan"),
        ("RUN_HEARTBEAT_TIMEOUT_S", "1"),  # less than twice the heartbeat
        ("TOPIC_RAW_RETENTION_MS", "-7"),
        ("MAX_DELETE_FRACTION", "1.5"),
        ("MAX_POLL_RECORDS", "-2"),
        ("TOPIC_PARTITIONS", "0"),
    ],
)
def test_a_hostile_value_is_refused_naming_its_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        SchedulerSettings()
        StreamSettings()
    assert name.lower() in str(refused.value).lower()


def test_forever_is_a_retention_and_zero_a_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_RAW_RETENTION_MS", "-1")
    monkeypatch.setenv("PRODUCER_LINGER_MS", "0")
    settings = SchedulerSettings()
    assert (settings.topic_raw_retention_ms, settings.producer_linger_ms) == (-1, 0)


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        (
            b"[sources.a]\nurl='http://x/'\nevery='1h'\nheaders=" + b"{a=" * 2000 + b"1" + b"}" * 2000,
            "nested too deeply",
        ),
        (b"[sources.a]\nurl='http://x/'\nevery=nan\n", "finite"),
        (b"[sources.a]\nurl='http://x/'\nevery='1h'\ndeadline=inf\n", "finite"),
        (b"[sources.a]\nurl='http://x/'\ncron='0 0 31 2 *'\n", "never fires"),
        (b"[sources.a]\nurl='http://x/" + b"a" * 5_000_000 + b"'\nevery='1h'\n", "at most"),
        (b"[sources.a]\nurl='ftp://x/'\nevery='1h'\n", "expected an http://"),
        (b"[sources.a]\nurl='http://x/?k=${UNSET_FOR_THIS_TEST}'\nevery='1h'\n", "is not set"),
    ],
)
def test_a_hostile_sources_file_is_refused_with_a_reason(toml: bytes, said: str) -> None:
    from producer.safety import SafetyPolicy
    from scheduler.sources_file import SourcesError, parse_sources

    with pytest.raises(SourcesError) as refused:
        parse_sources(toml, "hostile.toml", environ={}, safety=SafetyPolicy())
    assert said in " ".join(refused.value.errors)
