"""The worker's hand-written Avro (schemas/fastrecords.py) reads and writes exactly what fastavro
reads and writes, in both wire formats, and hands everything else to the serde."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from core.golden import GoldenConfig
from schemas import CURRENT_RECORD, END_OF_RUN, ISIN_EVENT, LISTING_CHANGE, SerializationError, make_serde
from schemas.fastpath import EventEncoder
from schemas.fastrecords import EventReader, fast_encoder
from stream_app.changes import backfill_changes, listing_changes
from stream_app.golden import Golden
from stream_app.records import epoch_ms, merge_event, remove_source
from tests.unit.test_fastpath import TEXT, random_record

STAMPS = [0, 1, 63, 64, -1, -65, 1_795_000_000_123, 2**45]


def _text(rng: random.Random, longest: int) -> str:
    return "".join(rng.choices(TEXT, k=rng.randint(0, longest)))


def _stamp(rng: random.Random) -> int | datetime:
    ms = rng.choice(STAMPS)
    if rng.random() < 0.5:
        return ms
    zone = rng.choice([UTC, timezone(timedelta(hours=5, minutes=30))])
    epoch = datetime(1970, 1, 1, tzinfo=UTC).astimezone(zone)
    return epoch + timedelta(milliseconds=ms, microseconds=rng.randint(0, 999))


def random_current(rng: random.Random) -> dict[str, Any]:
    listings = []
    for n in range(rng.choice([0, 1, 1, 2, 3, 70])):
        listing: dict[str, Any] = {
            "source": f"s{n}-{_text(rng, 8)}",
            "attributes": {_text(rng, 12): _text(rng, 90) for _ in range(rng.choice([0, 1, 2, 70]))},
            "content_hash": _text(rng, 40),
            "run_id": _text(rng, 30),
            "first_seen_at": _stamp(rng),
            "changed_at": _stamp(rng),
        }
        if rng.random() < 0.8:
            listing["fields"] = {_text(rng, 10): _text(rng, 20) for _ in range(rng.choice([0, 1, 3]))}
        listings.append(listing)
    record: dict[str, Any] = {
        "listing_hashes": _text(rng, 70),
        "isin": _text(rng, 12),
        "country_code": _text(rng, 2),
        "listings": listings,
        "change": rng.choice(["NEW", "CHANGED"]),
        "updated_at": _stamp(rng),
    }
    if rng.random() < 0.8:
        record["golden"] = {_text(rng, 10): {"value": _text(rng, 80), "source": _text(rng, 9)} for _ in range(3)}
        record["identifiers"] = {
            _text(rng, 6): {"value": _text(rng, 20), "sources": [_text(rng, 9) for _ in range(rng.randint(0, 3))]}
            for _ in range(rng.randint(0, 3))
        }
        record["conflicts"] = [
            {"field": _text(rng, 9), "values": {_text(rng, 9): _text(rng, 30) for _ in range(2)}}
            for _ in range(rng.choice([0, 0, 1, 2]))
        ]
    return record


def random_change(rng: random.Random) -> dict[str, Any]:
    def attrs() -> dict[str, str] | None:
        return rng.choice([None, {}, {_text(rng, 9): _text(rng, 70) for _ in range(rng.randint(1, 5))}])

    change: dict[str, Any] = {
        "change_id": _text(rng, 32),
        "op": rng.choice(["LISTED", "AMENDED", "DELISTED"]),
        "isin": _text(rng, 12),
        "source": _text(rng, 20),
        "run_id": _text(rng, 30),
        "slot": _stamp(rng),
        "recorded_at": _stamp(rng),
        "before": attrs(),
        "after": attrs(),
    }
    if rng.random() < 0.8:
        change["changed"] = sorted(_text(rng, 9) for _ in range(rng.randint(0, 4)))
        change["backfilled"] = rng.random() < 0.3
    return change


@pytest.mark.parametrize("registry", [None, {"url": "mock://fastrecords-write"}])
def test_the_writers_write_what_the_serde_writes(registry: dict[str, str] | None) -> None:
    serde = make_serde(registry)
    rng = random.Random(2022)
    for schema, generate in ((CURRENT_RECORD, random_current), (LISTING_CHANGE, random_change)):
        slow, fast = serde.encoder("t", schema), fast_encoder(serde, "t", schema)
        for _ in range(600):
            record = generate(rng)
            assert fast(record) == slow(record), record


def test_the_writers_write_the_workers_own_records_as_the_serde_does() -> None:
    """Records as the dedup loop builds them (merge, golden view, removal, changes), including
    records decoded from the table (their timestamps datetimes)."""
    serde = make_serde(None)
    rng = random.Random(5)
    golden = Golden(GoldenConfig(order=("a", "b")), 6)
    current, change = fast_encoder(serde, "c", CURRENT_RECORD), fast_encoder(serde, "h", LISTING_CHANGE)
    slow_current, slow_change = serde.encoder("c", CURRENT_RECORD), serde.encoder("h", LISTING_CHANGE)
    checked = 0
    for n in range(300):
        event = {**random_record(rng, rng.choice("ab"), f"r{n}", 1_795_000_000_000 + n), "slot": None}
        event["attributes"] |= rng.choice([{}, {"LEI": "HWUPKR0MPOU8FGXBT394"}, {"cusip": "037833100"}])
        before = None
        if rng.random() < 0.5:  # a record the table held: decoded, timestamps as datetimes
            before = serde.decode(slow_current(golden.apply(merge_event(None, {**event, "source": "b"})))).record
        after = golden.apply(merge_event(before, event))
        removed = remove_source(after, "a", 1_795_000_100_000) if after else None
        for record in (after, golden.apply(removed)):
            if record is not None:
                assert current(record) == slow_current(record)
                checked += 1
        for c in [*listing_changes(event["isin"], before, after, f"r{n}", n, 7), *backfill_changes(after, 9)]:
            assert change(c) == slow_change(c)
            checked += 1
    assert checked > 900


def test_what_the_writers_do_not_take_goes_to_the_serde() -> None:
    serde = make_serde(None)
    fast = fast_encoder(serde, "c", CURRENT_RECORD)
    record = random_current(random.Random(1))
    assert fast(record) == serde.encode("c", CURRENT_RECORD, record)  # the first: the serde's
    assert fast(record) == serde.encode("c", CURRENT_RECORD, record)  # then the hand-written one
    for broken in (
        {**record, "isin": None},
        {**record, "change": "GONE"},
        {**record, "updated_at": "yesterday"},
        {k: v for k, v in record.items() if k != "isin"},
        {**record, "golden": None},
    ):
        with pytest.raises(SerializationError):
            fast(broken)
    # a naive datetime and a bool where a long goes are the serde's to judge, as they were
    for odd in ({**record, "updated_at": datetime(2026, 12, 6, 12, 0)}, {**record, "updated_at": True}):
        assert fast(odd) == serde.encode("c", CURRENT_RECORD, odd)
    other = fast_encoder(serde, "e", END_OF_RUN)  # any other schema: the serde's own encoder
    marker = {
        "source": "s",
        "run_id": "r",
        "partition": 0,
        "events": 1,
        "first_offset": 0,
        "last_offset": 0,
        "run_valid": 1,
        "finished_at": 5,
    }
    assert other(marker) == serde.encode("e", END_OF_RUN, marker)


@pytest.mark.parametrize("registry", [None, {"url": "mock://fastrecords-read"}])
def test_the_event_reader_reads_what_the_serde_decodes(registry: dict[str, str] | None) -> None:
    serde = make_serde(registry)
    read = EventReader(serde)
    rng = random.Random(11)
    for slot in (None, 1_794_960_000_000, -5):
        encode = EventEncoder(serde, "isin.events", "src", "run-1", 1_795_000_000_123, slot_ms=slot)
        for _ in range(400):
            record = {**random_record(rng, "src", "run-1", 1_795_000_000_123), "slot": slot}
            for value in (
                encode(record["isin"], record["line"], record["attributes"], record["content_hash"]),
                serde.encode("isin.events", ISIN_EVENT, record),
            ):
                decoded = serde.decode(value).record
                expected = {
                    **decoded,
                    "published_at": epoch_ms(decoded["published_at"]),
                    "slot": None if decoded["slot"] is None else epoch_ms(decoded["slot"]),
                }
                assert read(value) == expected


def test_the_event_reader_reads_map_blocks_with_sizes() -> None:
    """Avro lets a writer give a map block's size in bytes (a negative count); fastavro never
    does, other writers may."""
    serde = make_serde(None)
    record = {**random_record(random.Random(4), "s", "r", 1), "attributes": {"a": "1", "bb": "22"}, "slot": None}
    value = serde.encode("isin.events", ISIN_EVENT, record)
    plain = b"\x04\x02a\x021\x04bb\x0422\x00"
    assert plain in value
    sized = b"\x03\x14\x02a\x021\x04bb\x0422\x00"  # count -2, its 10 bytes, the entries, the end
    expected = EventReader(serde)(value)
    assert expected is not None and expected["attributes"] == {"a": "1", "bb": "22"}
    assert EventReader(serde)(value.replace(plain, sized)) == expected
    assert serde.decode(value.replace(plain, sized)).record["attributes"] == expected["attributes"]


def test_the_event_reader_declines_what_the_serde_must_judge() -> None:
    serde = make_serde(None)
    read = EventReader(serde)
    record = {**random_record(random.Random(3), "s", "r", 1), "slot": None}
    value = serde.encode("isin.events", ISIN_EVENT, record)
    assert read(value) is not None
    assert read(value[:-3]) is None  # truncated
    assert read(value + b"\x00") is None  # trailing bytes
    assert read(b"not avro") is None
    assert read(b"") is None
    other = bytearray(value)
    other[2:10] = END_OF_RUN.fingerprint  # another schema's fingerprint
    assert read(bytes(other)) is None
    bad_utf8 = value.replace(record["isin"].encode(), b"\xff" * 12)
    assert read(bad_utf8) is None
    with pytest.raises(SerializationError):
        serde.decode(bad_utf8)


def test_strings_remembered_by_the_writer_stay_right_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer remembers encoded strings up to a bound, then forgets them all: records with
    more distinct strings than that, and strings met again after the reset, encode as the serde
    encodes them."""
    from schemas import fastrecords

    monkeypatch.setattr(fastrecords, "ENCODED_MAX", 500)
    monkeypatch.setattr(fastrecords, "_ENCODED", {})
    serde = make_serde(None)
    fast = fast_encoder(serde, "current", CURRENT_RECORD)
    fast(random_current(random.Random(0)))  # the header, from the serde
    rng = random.Random(7)
    records = [random_current(rng) for _ in range(300)]
    sizes = []
    for record in records * 2:  # the second round meets the first round's strings after resets
        assert fast(record) == serde.encode("current", CURRENT_RECORD, record)
        sizes.append(len(fastrecords._ENCODED))
    assert max(sizes) <= 500
    assert sum(1 for a, b in itertools.pairwise(sizes) if b < a) >= 4  # it was reset, more than once
