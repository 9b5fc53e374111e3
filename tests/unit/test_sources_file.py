"""The sources file: validation (every error at once, each naming its source and key), secrets
from the environment, ``sources check``, the stable source-to-partition mapping, and reloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from isin_pipeline.cli import main
from producer.safety import SafetyPolicy
from scheduler.fleet import SourcesWatcher, reload_on_sighup
from scheduler.membership import source_partition
from scheduler.sources_file import Sources, SourcesError, changes, load_sources, parse_sources

EXAMPLE = """
[defaults]
tz = "UTC"
max_delete_fraction = 0.05

[sources.nse]
url = "https://example.org/EQUITY_L.csv"
cron = "30 18 * * 1-5"
tz = "Asia/Kolkata"

[sources.gleif]
url = "https://example.org/isin-lei.zip"
every = "24h"
headers = { "X-Api-Key" = "${GLEIF_API_KEY}" }   # values from the environment, never in the file

[sources.b3]
url = "https://example.org/COTAHIST_D.ZIP"
cron = "0 22 * * 1-5"
format = "fixed"
isin_at = "231:242"
"""

ENV = {"GLEIF_API_KEY": "k-123"}


def parse(text: str, env: dict[str, str] | None = None) -> Sources:
    return parse_sources(text.encode(), "sources.toml", ENV if env is None else env)


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SourcesError) as info:
        parse(text, env)
    return info.value.errors


def test_the_example_file() -> None:
    sources = parse(EXAMPLE)
    assert [s.name for s in sources.sources] == ["b3", "gleif", "nse"]
    nse, gleif, b3 = (sources.get(n) for n in ("nse", "gleif", "b3"))
    assert nse and gleif and b3
    assert (nse.schedule.cron, nse.schedule.tz, nse.policy.catch_up) == ("30 18 * * 1-5", "Asia/Kolkata", "latest")
    assert (gleif.schedule.every_s, gleif.schedule.tz) == (86400, "UTC")
    assert gleif.credentials is not None and gleif.credentials.headers == {"X-Api-Key": "k-123"}
    assert "k-123" not in repr(gleif)  # secrets stay out of logs
    assert (b3.hints.format, b3.hints.isin_at) == ("fixed", (231, 242))
    assert nse.safety.max_delete_fraction == 0.05 and all(s.enabled for s in sources.sources)


def test_every_key_a_run_has() -> None:
    sources = parse(
        """
        [defaults]
        max_unreadable_fraction = 0.02
        [sources.full]
        url = "https://${HOST}/list.csv"
        every = 3600
        tz = "Europe/London"
        catch_up = "none"
        retry_failed_after = "0"
        deadline = "15m"
        max_bytes = 1000000
        username = "isin"
        password = "${PW}"
        bearer_token = "Token ${TOKEN}"
        headers = { Accept = "text/csv" }
        format = "csv"
        column = 7
        encoding = "cp1252"
        delimiter = ";"
        sheet = "Shares"
        header_row = 0
        max_delete_fraction = 0.1
        max_invalid_jump = 0.03
        allow_shrink = true
        force_publish = true
        enabled = false
        """,
        {"HOST": "example.org", "PW": "pw", "TOKEN": "t"},
    )
    (s,) = sources.sources
    assert s.url == "https://example.org/list.csv" and s.deadline_s == 900 and s.max_bytes == 1_000_000
    assert (s.policy.catch_up, s.policy.retry_failed_after_s, s.schedule.every_s) == ("none", 0, 3600)
    assert s.credentials is not None and s.credentials.auth is not None
    assert s.credentials.headers == {"Accept": "text/csv", "Authorization": "Bearer Token t"}
    assert (s.hints.column, s.hints.encoding, s.hints.delimiter, s.hints.sheet, s.hints.header_row) == (
        "7",
        "cp1252",
        ";",
        "Shares",
        0,
    )
    assert s.safety == SafetyPolicy(0.1, 0.02, 0.03, allow_shrink=True)
    assert s.force_publish and not s.enabled and sources.enabled() == []


def test_a_source_schedule_replaces_the_defaults_one() -> None:
    sources = parse(
        '[defaults]\nevery = "24h"\n[sources.a]\nurl = "https://x/a"\n'
        '[sources.b]\nurl = "https://x/b"\ncron = "0 7 * * *"\n'
    )
    a, b = sources.sources
    assert (a.schedule.every_s, b.schedule.cron) == (86400, "0 7 * * *")


def test_every_error_at_once_each_naming_its_source_and_key() -> None:
    errors = errors_of(
        """
        [sources.unknown]
        url = "https://x/a"
        every = "1h"
        colum = "ISIN"

        [sources.cron]
        url = "https://x/b"
        cron = "61 7 * * *"

        [sources.tz]
        url = "https://x/c"
        cron = "0 7 * * *"
        tz = "Mars/Olympus"

        [sources.both]
        url = "https://x/d"
        every = "1h"
        cron = "0 7 * * *"

        [sources.secret]
        url = "https://x/e"
        every = "1h"
        headers = { "X-Api-Key" = "s3cr3t-value" }

        [sources.missing]
        url = "https://x/f"
        every = "1h"
        headers = { "X-Api-Key" = "${NOT_SET_ANYWHERE}" }

        [sources.isin_at]
        url = "https://x/g"
        every = "1h"
        isin_at = "231:240"
        """,
        {},
    )
    assert errors == [
        "sources.unknown.colum: unknown key; did you mean 'column'?",
        "sources.cron.cron: bad cron expression '61 7 * * *': five fields, e.g. '30 18 * * 1-5'",
        "sources.tz.tz: unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/London",
        "sources.both.every: give one of every and cron, not both",
        'sources.secret.headers.X-Api-Key: a literal secret: put it in an environment variable and write "${NAME}"',
        "sources.missing.headers.X-Api-Key: environment variable NOT_SET_ANYWHERE is not set",
        "sources.isin_at.isin_at: '231:240': an ISIN is 12 bytes: START:END with END = START + 11, START at least 1",
    ]
    assert all("s3cr3t" not in e for e in errors)


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('url = "ftp://x/a"\nevery = "1h"', "sources.s.url: 'ftp://x/a': expected an http://, https:// or file:// URL"),
        ('url = "https:///a"\nevery = "1h"', "sources.s.url: 'https:///a': no host"),
        ('every = "1h"', "sources.s.url: missing"),
        ('url = "https://x/a"', "sources.s.every: no schedule"),
        ('url = "https://x/a"\nevery = "soon"', "sources.s.every: bad duration 'soon'"),
        ('url = "https://x/a"\nevery = "1h"\npassword = "hunter2"', "sources.s.username: give both"),
        ('url = "https://x/a"\nevery = "1h"\nbearer_token = "abc"', "sources.s.bearer_token: a literal secret"),
        ('url = "https://u:pw@x/a"\nevery = "1h"', "sources.s.url: a password in the URL is a literal secret"),
        ('url = "https://x/a"\nevery = "1h"\nenabled = "no"', "sources.s.enabled: Input should be a valid boolean"),
        ('url = "https://x/a"\nevery = "1h"\nmax_delete_fraction = 2', "sources.s.max_delete_fraction: Input should"),
        ('url = "https://x/a"\nevery = "1h"\nencoding = "klingon"', "sources.s.encoding: unknown encoding"),
        ('url = "https://x/a"\nevery = "1h"\ndelimiter = ";;"', "sources.s.delimiter: ';;': one character"),
        ('url = "https://x/a"\nevery = "1h"\nformat = "pdf"', "sources.s.format: Input should be 'csv'"),
        ('url = "https://x/a"\nevery = "1h"\nisin_at = "a:b"', "sources.s.isin_at: 'a:b': expected START:END"),
        ('url = "https://x/a"\nevery = "1h"\ncatch_up = "all"', "sources.s.catch_up: Input should be 'latest'"),
    ],
)
def test_one_bad_key(table: str, error: str) -> None:
    errors = errors_of(f"[sources.s]\n{table}\n")
    assert any(e.startswith(error) for e in errors), errors
    assert all("hunter2" not in e and "pw@" not in e for e in errors)


def test_file_level_errors() -> None:
    assert errors_of("[sources.a\n")[0].startswith("not a valid TOML file:")
    assert errors_of("[defaults]\ntz = 'UTC'\n") == [
        "sources: no sources: add a [sources.NAME] table with a url and every or cron"
    ]
    errors = errors_of(
        '[extra]\n[defaults]\nurl = "https://x"\ntz = "Nowhere/Else"\n[sources.a]\nurl = "https://x/a"\nevery = "1h"\n'
    )
    assert errors == [
        "extra: unknown key; a sources file has a [defaults] table, [sources.NAME] tables and a [precedence] table",
        "defaults.url: a URL belongs to a source, not to the defaults",
        "defaults.tz: unknown time zone 'Nowhere/Else'; use an IANA name such as Europe/London",
    ]  # reported once, not once per source
    assert errors_of('[sources."two words"]\nurl = "https://x/a"\nevery = "1h"\n')[0].startswith(
        "sources.two words: a source name is"
    )


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourcesError, match="cannot read the sources file"):
        load_sources(tmp_path / "nope.toml")


def test_the_partition_of_a_source_is_stable() -> None:
    """A stable hash of the name, the same in every process: not Python's salted ``hash``."""
    pinned = {"nse": 1, "gleif": 7, "b3": 4, "bse": 4, "xetra": 6, "nsdl": 3}
    assert {n: source_partition(n, 12) for n in pinned} == pinned
    code = "from scheduler.membership import source_partition as p; print([p(n, 12) for n in ('nse', 'gleif', 'b3')])"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "[1, 7, 4]"
    spread = [source_partition(f"source-{i}", 12) for i in range(1200)]
    assert min(spread.count(p) for p in range(12)) > 60  # about 100 each


def test_sources_check_prints_the_next_slots_in_each_time_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLEIF_API_KEY", "k-123")
    path = tmp_path / "sources.toml"
    path.write_text(EXAMPLE)
    assert main(["sources", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 3 sources (3 enabled), 12 partitions"
    nse = next(line for line in out if line.startswith("nse:"))
    assert "cron '30 18 * * 1-5' in Asia/Kolkata" in nse and nse.count("18:30:00 IST") == 3
    assert nse.endswith("partition 1") and "Sat" not in nse and "Sun" not in nse
    gleif = next(line for line in out if line.startswith("gleif:"))
    assert gleif.count("00:00:00 UTC") == 3 and "k-123" not in gleif


def test_sources_check_exits_2_with_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLEIF_API_KEY", raising=False)
    path = tmp_path / "sources.toml"
    path.write_text(EXAMPLE.replace('"30 18 * * 1-5"', '"30 25 * * 1-5"'))
    assert main(["sources", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}: sources.nse.cron: bad cron expression '30 25 * * 1-5': five fields, e.g. '30 18 * * 1-5'",
        f"{path}: sources.gleif.headers.X-Api-Key: environment variable GLEIF_API_KEY is not set",
        f"isin-pipeline sources check: 2 errors in {path}",
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--source", "ftp://x/a", "--every", "1h"], "--source: 'ftp://x/a': expected an http://, https:// or file://"),
        (["--source", "https://x/a", "--cron", "0 7 * * *", "--tz", "Mars/Olympus"], "--tz: unknown time zone"),
        (["--source", "https://x/a"], "--source needs --every DURATION or --cron EXPR"),
        (["--sources", "f.toml", "--every", "1h"], "--every: with --sources, set this in the sources file"),
    ],
)
def test_schedule_refuses_a_bad_source_before_anything_runs(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", *args]) == 2
    assert error in capsys.readouterr().err


def test_schedule_refuses_an_invalid_sources_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[sources.a]\nurl = "https://x/a"\ncron = "0 7 * * *"\ntz = "Mars/Olympus"\n')
    assert main(["schedule", "--sources", str(path)]) == 2
    assert "sources.a.tz: unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def test_produce_only_needs_a_runnable_source(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[sources.a]\nurl = "https://x/a"\nevery = "1h"\nenabled = false\n')
    sources = load_sources(path)
    with pytest.raises(ConfigError, match="source 'a' is disabled"):
        sources.runnable("a")
    with pytest.raises(ConfigError, match=r"no source 'b' in .*; its sources: a"):
        sources.runnable("b")


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_changed_file_is_noticed_and_an_invalid_one_refused_once(tmp_path: Path) -> None:
    one, two = (f'[sources.{n}]\nurl = "https://x/{n}"\nevery = "1h"\n' for n in "ab")
    path = tmp_path / "sources.toml"
    path.write_text(one)
    current = load_sources(path)
    ticks = Ticks()
    watcher = SourcesWatcher(path, current, lambda data, where: parse_sources(data, where, {}), 5, ticks)
    assert watcher.poll() is None
    path.write_text(one.replace("1h", "2h") + two)
    assert watcher.poll() is None  # not yet: the next poll is in 5 s
    ticks.now = 5
    new = watcher.poll()
    assert isinstance(new, Sources) and changes(current, new) == (["b"], [], ["a"])
    ticks.now = 10
    assert watcher.poll() is None  # unchanged since
    path.write_text(one + 'evry = "1h"\n')
    ticks.now = 15
    refused = watcher.poll()
    assert isinstance(refused, SourcesError)
    assert refused.errors == ["sources.a.evry: unknown key; did you mean 'every'?"]
    ticks.now = 20
    assert watcher.poll(force=True) is None  # reported once, not at every poll
    path.write_text(one.replace("1h", "2h") + two)
    ticks.now = 25
    assert watcher.poll() is None  # back to the good one in force: nothing to apply
    path.write_text(two.replace("/b", "/c"))
    again = watcher.poll(force=True)  # SIGHUP: at once, whatever the poll interval
    assert isinstance(again, Sources) and changes(new, again) == ([], ["a"], ["b"])


def test_sighup_asks_for_a_reload() -> None:
    with reload_on_sighup() as reload:
        os.kill(os.getpid(), signal.SIGHUP)
        assert reload.wait(5)


def test_fields_and_precedence_for_the_golden_view_are_checked_with_every_other_key() -> None:
    good = EXAMPLE + '\n[precedence]\nlei = ["gleif", "*"]\n'
    good = good.replace(
        'cron = "30 18 * * 1-5"\n', 'cron = "30 18 * * 1-5"\nfields = { name = "NAME OF COMPANY" }\n', 1
    )
    parsed = parse_sources(good.encode(), "good.toml", {"GLEIF_API_KEY": "k"})
    assert {s.name for s in parsed.sources} == {"nse", "gleif", "b3"}
    bad = good.replace('lei = ["gleif", "*"]', 'lei = ["nosuch", "*", "*"]').replace("name = ", "nmae = ")
    bad = bad.replace("[defaults]\n", '[defaults]\nfields = { lei = "LEI" }\n')
    with pytest.raises(SourcesError) as info:
        parse_sources(bad.encode(), "bad.toml", {"GLEIF_API_KEY": "k"})
    text = str(info.value)
    assert "sources.nse.fields.nmae" in text
    assert "precedence.lei" in text and "nosuch" in text
    assert "defaults.fields" in text
    assert len(info.value.errors) == 4, text  # only what is wrong: nmae, nosuch, "*" twice, defaults.fields
