"""Argument parsing of the command line and of the tools' positions."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from core.errors import ConfigError
from core.kafka import KafkaSettings
from isin_pipeline.cli import build_parser, main
from ops.downstream import parse_offsets, topic_name
from ops.timestamps import parse_timestamp


def test_offsets() -> None:
    assert parse_offsets("0:10, 3:0") == {0: 10, 3: 0}
    for bad in ("0", "a:1", "0:-5", "1:2:3"):
        with pytest.raises(ConfigError, match=r"PARTITION:OFFSET|not negative"):
            parse_offsets(bad)


def test_timestamps_default_to_utc() -> None:
    assert parse_timestamp("2026-11-22T07:15:00Z") == datetime(2026, 11, 22, 7, 15, tzinfo=UTC)
    assert parse_timestamp("2026-11-22T07:15:00") == datetime(2026, 11, 22, 7, 15, tzinfo=UTC)
    assert parse_timestamp("2026-11-22T08:15:00+01:00").astimezone(UTC).hour == 7
    with pytest.raises(ConfigError, match="ISO-8601"):
        parse_timestamp("yesterday")


def test_topic_aliases() -> None:
    s = KafkaSettings(topic_current="c", topic_raw="r")
    assert (topic_name(s, "current"), topic_name(s, "raw"), topic_name(s, "other.topic")) == ("c", "r", "other.topic")


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    expected = {
        "broker",
        "produce",
        "stream",
        "demo",
        "tail",
        "snapshot",
        "replay",
        "rebuild",
        "history",
        "changes",
        "lookup",
        "conflicts",
    }
    assert expected <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([name, "--help"])
        assert info.value.code == 0
    assert "--from-beginning" in capsys.readouterr().out


def test_every_option_of_every_command_has_help_text() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert missing == []


def test_log_options_work_before_and_after_the_subcommand() -> None:
    parser = build_parser()
    before = parser.parse_args(["--log-level", "debug", "snapshot", "--out", "-"])
    after = parser.parse_args(["snapshot", "--out", "-", "--log-level", "debug", "--log-format", "json"])
    neither = parser.parse_args(["snapshot", "--out", "-"])
    assert (before.log_level, after.log_level, after.log_format) == ("DEBUG", "DEBUG", "json")
    assert neither.log_level in ("DEBUG", "INFO", "WARNING", "ERROR") and neither.log_format in ("text", "json")


def test_bad_configuration_is_a_clear_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOPIC_PARTITIONS", "zero")
    assert main(["snapshot", "--out", "-"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("isin-pipeline snapshot: configuration error: topic_partitions")


def test_the_command_line_loads_the_stream_runtime_only_for_the_commands_that_run_it() -> None:
    """Every ``produce`` of the scheduler fleet builds the whole parser: Faust, aiokafka and
    aiohttp (a quarter of a second) load only when a worker or the demo starts."""
    import subprocess
    import sys

    code = (
        "import sys; from isin_pipeline.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('faust', 'aiokafka', 'aiohttp', 'mode') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
