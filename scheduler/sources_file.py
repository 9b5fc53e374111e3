"""The sources file: every list a scheduler fleet runs, in one TOML file.

::

    [defaults]                  # applies to every source
    tz = "UTC"
    max_delete_fraction = 0.05

    [sources.nse]
    url = "https://example.org/EQUITY_L.csv"
    cron = "30 18 * * 1-5"
    tz = "Asia/Kolkata"

    [sources.gleif]
    url = "https://example.org/isin-lei.zip"
    every = "24h"
    headers = { "X-Api-Key" = "${GLEIF_API_KEY}" }    # from the environment
    fields = { lei = "LEI" }                          # its columns for the golden view

    [precedence]                # per field, which source is believed first (default: file order)
    lei = ["gleif", "*"]

Read with ``tomllib``, validated with pydantic. Every error is reported at once, each naming
its source and key (``sources.nse.cron: bad cron expression '61 * * * *'``). Secrets are never
in the file: ``password``, ``bearer_token``, a password in the URL and header values (but for
a few plain ones such as ``Accept``) must name environment variables, ``${NAME}``, read when
the file is loaded; a literal value is an error, and so is a variable that is not set. A value
never changes a URL's host (one in its user info is percent-encoded), nor adds a header line.
What the keys' own checks let through but a run could not use is refused too (``_problems``): a
schedule whose slots cannot be computed or fire more than once a second, a URL with a bad port
or a control character, a header that is not one. A source's name is the ``<source>`` of its
run records, and maps it to a partition of the scheduler topic (``source_partition``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from core.errors import ConfigError
from core.golden import problems as golden_problems
from core.logs import register_secret
from producer.download import Credentials
from producer.reading import ReadHints
from producer.safety import SafetyPolicy
from producer.settings import header_problem
from producer.slots import Schedule
from producer.urls import redact_url
from scheduler.env_refs import literal_secrets, resolve_env
from scheduler.spec import SchedulePolicy, SourceFields, SourceSpec

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
MIN_EVERY_S, MAX_DURATION_S = 1.0, 366 * 86400.0
MAX_URL_CHARS = 8192


class SourcesError(ConfigError):
    """The sources file is invalid: ``errors`` holds every error, each naming its source and key."""

    def __init__(self, where: str, errors: list[str]) -> None:
        self.where = where
        self.errors = errors
        super().__init__(f"{where}: {len(errors)} error{'s' if len(errors) > 1 else ''}: {'; '.join(errors)}")


KEYS = tuple(SourceFields.model_fields)


@dataclass(frozen=True)
class Sources:
    """A valid sources file: its sources, by name."""

    where: str
    sources: tuple[SourceSpec, ...]
    digest: str
    """SHA-256 of the file's bytes."""

    def enabled(self) -> list[SourceSpec]:
        return [s for s in self.sources if s.enabled]

    def get(self, name: str) -> SourceSpec | None:
        return next((s for s in self.sources if s.name == name), None)

    def runnable(self, name: str) -> SourceSpec:
        """The enabled source ``name``, for a run by hand or by a CronJob; ConfigError if there is none."""
        spec = self.get(name)
        if spec is None:
            raise ConfigError(f"no source {name!r} in {self.where}; its sources: {', '.join(self.names())}")
        if not spec.enabled:
            raise ConfigError(f"source {name!r} is disabled in {self.where} (enabled = false)")
        return spec

    def names(self) -> list[str]:
        return [s.name for s in self.sources]


def load_sources(
    path: str | Path, environ: Mapping[str, str] | None = None, safety: SafetyPolicy | None = None
) -> Sources:
    """Read and validate a sources file; SourcesError with every error found."""
    return parse_sources(read_sources_file(path), str(path), environ, safety)


def read_sources_file(path: str | Path) -> bytes:
    """A regular file's bytes, at most one more than ``MAX_FILE_BYTES`` (a FIFO would block, a
    device such as /dev/zero never end); SourcesError if it cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise SourcesError(str(path), ["cannot read the sources file: not a regular file"])
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SourcesError(str(path), [f"cannot read the sources file: {exc.strerror or exc}"]) from None


MAX_FILE_BYTES = 4 * 1024 * 1024
"""A sources file of thousands of sources is a few hundred kilobytes: anything much larger is a mistake."""


def parse_sources(
    data: bytes, where: str, environ: Mapping[str, str] | None = None, safety: SafetyPolicy | None = None
) -> Sources:
    env = os.environ if environ is None else environ
    base = safety or SafetyPolicy()
    if len(data) > MAX_FILE_BYTES:
        raise SourcesError(where, [f"{len(data)} bytes: a sources file is at most {MAX_FILE_BYTES} bytes"])
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SourcesError(where, [f"not a valid TOML file: {exc}"]) from None
    except RecursionError:
        raise SourcesError(where, ["not a valid sources file: values nested too deeply"]) from None
    errors = [
        f"{key}: unknown key; a sources file has a [defaults] table, [sources.NAME] tables and a [precedence] table"
        for key in doc
        if key not in ("defaults", "sources", "precedence")
    ]
    errors += golden_problems(doc)  # each source's fields table and [precedence] (the golden view's)
    defaults = _defaults(doc.get("defaults", {}), env, errors)
    tables = doc.get("sources")
    if not isinstance(tables, dict) or not tables:
        errors.append("sources: no sources: add a [sources.NAME] table with a url and every or cron")
        tables = {}
    specs = [spec for name, raw in tables.items() if (spec := _source(name, raw, defaults, env, base, errors))]
    if errors:
        raise SourcesError(where, errors)
    return Sources(where, tuple(sorted(specs, key=lambda s: s.name)), hashlib.sha256(data).hexdigest())


def _defaults(raw: Any, env: Mapping[str, str], errors: list[str]) -> dict[str, Any]:
    """``[defaults]`` with its invalid keys left out (their errors reported once, here)."""
    if not isinstance(raw, dict):
        errors.append("defaults: expected a table, [defaults]")
        return {}
    found: list[str] = []
    if "url" in raw:
        found.append("defaults.url: a URL belongs to a source, not to the defaults")
    if "fields" in raw:
        found.append("defaults.fields: a fields table belongs to a source (its own column names)")
    found += literal_secrets("defaults", raw)
    resolved = resolve_env("defaults", {k: v for k, v in raw.items() if k != "fields"}, env, found)
    try:
        SourceFields.model_validate(resolved)
    except ValidationError as exc:
        found += _messages("defaults", exc)
    errors += found
    bad = {m.split(":", 1)[0].removeprefix("defaults.").split(".", 1)[0] for m in found}
    return {k: v for k, v in raw.items() if k not in bad}


def _source(
    name: str, raw: Any, defaults: dict[str, Any], env: Mapping[str, str], base: SafetyPolicy, errors: list[str]
) -> SourceSpec | None:
    where = f"sources.{name if name.isprintable() else repr(name)}"
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table, [sources.{name}]")
        return None
    found: list[str] = []
    if not _NAME.match(name):
        found.append(
            f"{where}: a source name is at most 200 letters, digits and . _ : / -, starting with a letter or digit"
        )
    inherited = {k: v for k, v in defaults.items() if not ({"every", "cron"} & raw.keys() and k in ("every", "cron"))}
    # a source's own schedule replaces the defaults' one; its fields table is the golden view's,
    # checked with [precedence] by golden_problems
    merged = {k: v for k, v in {**inherited, **raw}.items() if k != "fields"}
    if isinstance(defaults.get("headers"), dict) and isinstance(raw.get("headers"), dict):
        merged["headers"] = {**defaults["headers"], **raw["headers"]}
    if "url" not in merged:
        found.append(f"{where}.url: missing: the list's http://, https:// or file:// URL")
    if "every" in merged and "cron" in merged:
        which = "every" if "every" in raw else "cron"
        found.append(f"{where}.{which}: give one of every and cron, not both")
    elif "every" not in merged and "cron" not in merged:
        found.append(f'{where}.every: no schedule: give every (e.g. "24h") or cron (e.g. "30 18 * * 1-5")')
    if ("username" in merged) != ("password" in merged):
        found.append(f"{where}.{'password' if 'username' in merged else 'username'}: give both username and password")
    found += literal_secrets(where, merged)
    resolved = resolve_env(where, merged, env, found)
    fields = None
    try:
        fields = SourceFields.model_validate(resolved)
        found += [f"{where}.{key}: {problem}" for key, problem in _problems(fields)]
    except ValidationError as exc:
        found += _messages(where, exc)
    errors += found
    if found or fields is None:
        return None
    return _spec(name, fields, base, resolved)


def _spec(name: str, f: SourceFields, base: SafetyPolicy, resolved: dict[str, Any]) -> SourceSpec:
    assert f.url is not None
    schedule = Schedule(every_s=f.every, cron=f.cron, tz=f.tz or "UTC")
    retry = 600.0 if f.retry_failed_after is None else f.retry_failed_after
    headers = dict(f.headers or {})
    if f.bearer_token:
        headers["Authorization"] = f"Bearer {f.bearer_token}"
    auth = httpx.BasicAuth(f.username, f.password) if f.username and f.password else None
    register_secret(f.password)
    digest = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()
    return SourceSpec(
        name=name,
        url=f.url,
        policy=SchedulePolicy(schedule, f.catch_up or "latest", retry_failed_after_s=retry),
        hints=f.hints(),
        safety=SafetyPolicy(
            max_delete_fraction=_or(f.max_delete_fraction, base.max_delete_fraction),
            max_unreadable_fraction=_or(f.max_unreadable_fraction, base.max_unreadable_fraction),
            max_invalid_jump=_or(f.max_invalid_jump, base.max_invalid_jump),
            allow_shrink=bool(f.allow_shrink),
        ),
        force_publish=bool(f.force_publish),
        deadline_s=f.deadline,
        max_bytes=f.max_bytes,
        credentials=Credentials(headers, auth),
        enabled=f.enabled is not False,
        digest=digest,
    )


def flag_source(
    url: str, name: str | None, hints: ReadHints, safety: SafetyPolicy, force_publish: bool, **schedule: str | None
) -> SourceSpec:
    """``schedule --source URL --every|--cron``: a source from the command line's flags, checked as in a file."""
    f = _flags({"url": url, **schedule})
    if f.every is None and f.cron is None:
        raise ConfigError("--source needs --every DURATION or --cron EXPR")
    problems = _problems(f)
    if problems:
        raise ConfigError("; ".join(f"--{'source' if k == 'url' else k.replace('_', '-')}: {m}" for k, m in problems))
    retry = 600.0 if f.retry_failed_after is None else f.retry_failed_after
    return SourceSpec(
        name=name or redact_url(url),
        url=url,
        policy=SchedulePolicy(
            Schedule(f.every, f.cron, f.tz or "UTC"), f.catch_up or "latest", retry_failed_after_s=retry
        ),
        hints=hints,
        safety=safety,
        force_publish=force_publish,
    )


def _flags(values: dict[str, Any]) -> SourceFields:
    try:
        return SourceFields.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        errors = [m.split(":", 1) for m in _messages("", exc)]  # ".isin_at: ..." -> "--isin-at: ..."
        flags = [("--source" if key == ".url" else "--" + key[1:].replace("_", "-"), msg) for key, msg in errors]
        raise ConfigError("; ".join(f"{flag}:{msg}" for flag, msg in flags)) from None


def _problems(f: SourceFields) -> list[tuple[str, str]]:
    """What the keys' own checks let through but a run cannot use: (key, why) pairs."""
    found = [("url", problem)] if (problem := _url_problem(f.url or "")) else []
    for key, value in (("every", f.every), ("deadline", f.deadline), ("retry_failed_after", f.retry_failed_after)):
        if value is not None and value > MAX_DURATION_S:
            found.append((key, f"{value:g}s: at most {MAX_DURATION_S / 86400:g}d"))
    if f.every is not None and f.every < MIN_EVERY_S:
        found.append(("every", f"{f.every:g}s: runs are at least {MIN_EVERY_S:g}s apart"))
    if not found and (problem := _schedule_problem(f)):
        found.append(("every" if f.every is not None else "cron", problem))
    headers = {**(f.headers or {}), **({"Authorization": f"Bearer {f.bearer_token}"} if f.bearer_token else {})}
    for name, text in headers.items():
        problem = header_problem(name, text)
        if problem:
            shown = name if name.isprintable() else repr(name)
            found.append(("bearer_token" if name == "Authorization" else f"headers.{shown}", problem))
    if f.username is not None and (":" in f.username or not f.username.isprintable()):
        found.append(("username", "no colon nor control character in a user name (HTTP Basic)"))
    return found


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if len(url) > MAX_URL_CHARS:
        return f"{len(url)} characters: a URL is at most {MAX_URL_CHARS}"
    if any(c <= " " or c == "\x7f" for c in url):
        return "a space, a line break or a control character in the URL (or in a variable it names)"
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"{redact_url(url)!r}: {exc}"
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        return f"{url!r}: a file:// URL names a local file by its absolute path, file:///path"
    return None


def _schedule_problem(f: SourceFields) -> str | None:
    """Why the schedule's slots cannot be computed (a cron with seconds fires every second)."""
    if f.cron is not None and not f.cron.startswith("@") and len(f.cron.split()) != 5:
        return f"{f.cron!r}: five fields (minute hour day month weekday), no seconds, no years"
    if (f.every is None) == (f.cron is None):  # reported already
        return None
    try:
        schedule = Schedule(every_s=f.every, cron=f.cron, tz=f.tz or "UTC")
        schedule.next_after(schedule.next_after(schedule.latest(datetime.now(UTC))))
    except (ArithmeticError, ValueError, ConfigError) as exc:
        return f"its slots cannot be computed: {exc}"
    return None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _messages(where: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, KEYS, n=1)
            msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else f"; the keys are {', '.join(KEYS)}")
        out.append(f"{where}.{key}: {msg}")
    return out


def changes(old: Sources, new: Sources) -> tuple[list[str], list[str], list[str]]:
    """The names of the sources added, removed and changed (enabled or not) from ``old`` to ``new``."""
    before = {s.name: s.digest for s in old.sources}
    after = {s.name: s.digest for s in new.sources}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(n for n in set(before) & set(after) if before[n] != after[n])
    return added, removed, changed
