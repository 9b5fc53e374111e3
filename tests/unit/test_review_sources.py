"""An adversarial review of the sources file, its reload and the environment: hostile TOML and
hostile environment values are refused at load, each with its source and key, never echoing a
secret; a reload of a hostile file never stops the fleet nor blocks it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from isin_pipeline.cli import main
from producer.reading import ReadHints
from producer.safety import SafetyPolicy
from scheduler.fleet import SourcesWatcher
from scheduler.sources_file import Sources, SourcesError, flag_source, load_sources, parse_sources

URL = "url='https://lists.example.org/l.csv'\n"


def refused(toml: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SourcesError) as info:
        parse_sources(toml.encode(), "hostile.toml", env or {}, SafetyPolicy())
    return " | ".join(info.value.errors)


@pytest.mark.parametrize(
    ("toml", "env", "said"),
    [
        # numbers the keys' own checks let through, but the slot arithmetic or the loop cannot use
        (URL + "every='0.001s'", {}, "sources.a.every: 0.001s: runs are at least 1s apart"),
        (URL + "every=1e300", {}, "sources.a.every: 1e+300s: at most 366d"),
        (URL + "every='99999999999999999999d'", {}, "sources.a.every: 8.64e+24s: at most 366d"),
        (URL + "every='1h'\ndeadline=1e300", {}, "sources.a.deadline: 1e+300s: at most 366d"),
        (URL + "every='1h'\nretry_failed_after=1e18", {}, "sources.a.retry_failed_after: 1e+18s: at most 366d"),
        # a cron with a seconds field fires every second
        (URL + "cron='* * * * * *'", {}, "sources.a.cron: '* * * * * *': five fields"),
        (URL + "cron='0 0 1 1 * 2099'", {}, "five fields"),
        # URLs a run could not use, or would use otherwise than written
        ("url='http://e.org:99999/x'\nevery='1h'", {}, "sources.a.url: 'http://e.org/x': Port out of range"),
        ("url='http://e.org/x\\nHost: evil'\nevery='1h'", {}, "sources.a.url: a space, a line break"),
        ("url='file://fileserver/share/l.csv'\nevery='1h'", {}, "a file:// URL names a local file by its absolute"),
        ("url='file:l.csv'\nevery='1h'", {}, "a file:// URL names a local file by its absolute"),
        ("url='https://${H}/l.csv'\nevery='1h'", {"H": "evil.org/x?"}, "variable H does not hold a host name"),
        ("url='https://${H}/l.csv'\nevery='1h'", {"H": "e.org\r\nX: 1"}, "variable H does not hold a host name"),
        ("url='https://e.org/${P}'\nevery='1h'", {"P": "a b"}, "sources.a.url: a space, a line break"),
        ("url='https://e.org/?k=${K}'\nevery='1h'", {"K": "k" * 9000}, "characters: a URL is at most 8192"),
        # headers that would be another request, or never be sent
        (URL + "every='1h'\nheaders={X-Key='${K}'}", {"K": "v\r\nX-Injected: 1"}, "headers.X-Key: the value holds a"),
        (URL + "every='1h'\nheaders={X-Key='${K}'}", {"K": "v\x00"}, "headers.X-Key: the value holds a"),
        (URL + "every='1h'\nheaders={X-Key='${K}'}", {"K": "clé"}, "headers.X-Key: the value holds a"),
        (URL + "every='1h'\nheaders={X-Key='${K}'}", {"K": "k" * 10_000}, "10000 characters, more than 8192"),
        (URL + "every='1h'\nheaders={'X Key'='${K}'}", {"K": "v"}, "headers.X Key: not a header name"),
        (URL + "every='1h'\nheaders={\"X\\nKey\"='${K}'}", {"K": "v"}, "headers.'X\\nKey': not a header name"),
        (URL + "every='1h'\nheaders={Host='${K}'}", {"K": "evil.org"}, "Host is set by the HTTP client"),
        (URL + "every='1h'\nheaders={Transfer-Encoding='chunked'}", {}, "Transfer-Encoding is set by the HTTP"),
        (URL + "every='1h'\nbearer_token='${T}'", {"T": "t\nX-Injected: 1"}, "sources.a.bearer_token: the value"),
        (URL + "every='1h'\nusername='a:b'\npassword='${P}'", {"P": "p"}, "sources.a.username: no colon"),
    ],
)
def test_a_hostile_source_is_refused_naming_its_key(toml: str, env: dict[str, str], said: str) -> None:
    errors = refused("[sources.a]\n" + toml, env)
    assert said in errors
    for secret in env.values():
        if len(secret) > 3:
            assert secret not in errors, "an error quoted an environment value"


def test_a_source_name_with_control_characters_is_shown_escaped() -> None:
    errors = refused('[sources."a\\nb\\u001b[31m"]\n' + URL + "every='1h'")
    assert "sources.'a\\nb\\x1b[31m': a source name is" in errors
    assert "\n" not in errors and "\x1b" not in errors


def test_a_password_from_the_environment_never_moves_the_url_to_another_host() -> None:
    """A password holding ``@``, ``/``, ``#`` or ``:`` used to cut the URL: ``https://u:p@ss/w#x@host``
    sent the user and the start of the password to the host ``ss``."""
    secret = "p@ss/w:rd#x?y"  # noqa: S105 - a test value
    sources = parse_sources(
        b"[sources.a]\nurl='https://reader:${PW}@lists.example.org/l.csv'\nevery='1h'\n", "f", {"PW": secret}
    )
    spec = sources.sources[0]
    request = httpx.Client().build_request("GET", spec.url)
    assert request.url.host == "lists.example.org" and request.url.path == "/l.csv"
    assert (request.url.username, request.url.password) == ("reader", secret)
    # an already percent-encoded value keeps working as it did
    again = parse_sources(
        b"[sources.a]\nurl='https://reader:${PW}@lists.example.org/l.csv'\nevery='1h'\n", "f", {"PW": "p%40ss"}
    )
    assert httpx.URL(again.sources[0].url).password == "p@ss"  # noqa: S105


def test_the_command_line_source_is_checked_as_in_a_file() -> None:
    cases = [
        ({"url": "https://e.org/l.csv", "every": "500ms"}, "--every: 0.5s: runs are at least 1s apart"),
        ({"url": "https://e.org/l.csv", "cron": "* * * * * *"}, "--cron: '* * * * * *': five fields"),
        ({"url": "http://e.org:70000/l.csv", "every": "1h"}, "Port out of range"),
    ]
    for flags, said in cases:
        url = flags.pop("url")
        with pytest.raises(ConfigError) as info:
            flag_source(url, None, ReadHints(), SafetyPolicy(), False, **flags)
        assert said in str(info.value)


GOOD = b"[sources.a]\nurl='https://lists.example.org/l.csv'\nevery='1h'\n"


def loader(data: bytes, where: str) -> Sources:
    return parse_sources(data, where, {}, SafetyPolicy())


def test_a_sources_file_that_never_ends_or_never_opens_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it would block until a writer comes: none will
    results: dict[str, str] = {}

    def load(path: str) -> None:
        try:
            load_sources(path, {}, SafetyPolicy())
            results[path] = "loaded"
        except SourcesError as exc:
            results[path] = str(exc)

    for path in (str(fifo), "/dev/zero"):
        thread = threading.Thread(target=load, args=(path,), daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), f"loading {path} did not end"
        assert "not a regular file" in results[path]


def test_a_reload_of_a_hostile_file_is_refused_and_never_stops_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_bytes(GOOD)
    current = loader(GOOD, str(path))
    ticks = iter(range(1000))
    watcher = SourcesWatcher(path, current, loader, poll_s=1, clock=lambda: float(next(ticks)) * 10)
    hostile = [
        b"[sources.a]\nurl='https://e.org/'\nevery='1h'\nheaders=" + b"{a=" * 5000 + b"1" + b"}" * 5000,
        b"[sources.a]\nurl='https://e.org/'\ncron='* * * * * *'\n",
        b"[sources.a]\nurl='https://e.org/'\nevery=1e300\n",
    ]
    for data in hostile:
        path.write_bytes(data)
        result = watcher.poll(force=True)
        assert isinstance(result, SourcesError), data[:60]
        assert watcher.refused
    # replaced by a FIFO (a ConfigMap cannot, a hand can): refused, not blocked
    path.unlink()
    os.mkfifo(path)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(watcher.poll(force=True)), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the watcher blocked on a FIFO"
    assert isinstance(outcome[0], SourcesError) and "not a regular file" in outcome[0].errors[0]

    def broken(data: bytes, where: str) -> Sources:
        raise RuntimeError("a bug in the loader")

    path.unlink()
    path.write_bytes(GOOD + b"# changed\n")
    failing = SourcesWatcher(path, current, broken, poll_s=1)
    result = failing.poll(force=True)
    assert isinstance(result, SourcesError) and "RuntimeError: a bug in the loader" in result.errors[0]


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("API_TOKEN", "tökén", "API_TOKEN must be visible ASCII"),  # could never be sent: every request 401
        ("API_TOKEN", "two words", "API_TOKEN must be visible ASCII"),
        ("API_TOKEN", "line\nbreak", "API_TOKEN must be visible ASCII"),
        ("WEB_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_a_stream_setting_that_cannot_work_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    from stream_app.settings import StreamSettings

    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        StreamSettings()
    assert said in str(info.value)
    assert value not in str(info.value), "the refused value (maybe a secret) is in the error"


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("SOURCE_HTTP_HEADERS", '{"X-Api-Key": "s3cr3t\\r\\nX-Injected: 1"}', "'X-Api-Key': the value holds a line"),
        ("SOURCE_HTTP_HEADERS", '{"Host": "s3cr3t.example"}', "Host is set by the HTTP client"),
        ("SOURCE_BEARER_TOKEN", "s3cr3t\nX-Injected: 1", "SOURCE_BEARER_TOKEN: the value holds a line"),
    ],
)
def test_a_hostile_vendor_header_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    from producer.settings import ProducerSettings

    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        ProducerSettings()
    assert said in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_an_environment_value_that_does_not_parse_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "*")  # a list is JSON: ["*"]
    assert main(["stream", "--web-port", "1"]) == 2
    err = capsys.readouterr().err
    assert 'configuration error: error parsing value for field "cors_origins"' in err
    assert "Traceback" not in err
