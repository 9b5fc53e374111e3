"""A new ISIN's writes joined from its event's bytes (schemas/fresh.py, stream_app/fresh.py) are
the general path's, byte for byte: on generated events in both wire formats, and through the
dedup loop on real lists."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stdnum import cusip as stdnum_cusip
from stdnum import isin as stdnum_isin
from stdnum.iso7064 import mod_97_10

from core.golden import GoldenConfig
from core.isin import InvalidIsin, validate_isin
from schemas import (
    CURRENT_RECORD,
    END_OF_RUN,
    ISIN_EVENT,
    LISTING_CHANGE,
    Serde,
    SerializationError,
    content_hash,
    make_serde,
)
from schemas.fastpath import EventEncoder
from schemas.fresh import FreshWriter
from stream_app.changes import listing_changes
from stream_app.dedup import Dedup
from stream_app.fresh import FreshIsin
from stream_app.golden import Golden
from stream_app.records import epoch_ms, merge_event
from stream_app.seen import SeenIndex
from tests.unit.fakes import DictTableStore, FakeReindex, ListOutput, RawRecord
from tests.unit.test_fastpath import TEXT
from tests.unit.test_golden_real_lists import NSE, XETRA, rows_of

CLOCK_MS = 1_795_000_050_000
PUBLISHED = 1_795_000_000_123


def _code(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


def _cusip(rng: random.Random) -> str:
    body = _code(rng, "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", 8)
    return body + stdnum_cusip.calc_check_digit(body)


def _lei(rng: random.Random) -> str:
    body = _code(rng, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 18)
    return body + mod_97_10.calc_check_digits(body)


def _isin(rng: random.Random) -> str:
    country = rng.choice(["US", "CA", "GB", "IE", "DE", "XS", "JP"])
    if country in ("US", "CA"):
        body = country + _cusip(rng)
    elif country in ("GB", "IE"):
        body = country + "00" + _code(rng, "0123456789", 7)  # a SEDOL inside when its check holds
    else:
        body = country + _code(rng, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 9)
    return body + stdnum_isin.calc_check_digit(body)


def random_event(rng: random.Random, source: str, run_id: str, slot: int | None) -> dict[str, Any]:
    """An IsinEvent whose attributes (named as the producer names columns) mean golden fields
    (valid, invalid, disagreeing with the CUSIP inside the ISIN) or nothing, with any text."""
    isin = _isin(rng)
    attributes: dict[str, str] = {}
    for _ in range(rng.choice([0, 1, 2, 3, 6, 40])):
        kind = rng.random()
        if kind < 0.15:
            attributes["lei"] = rng.choice([_lei(rng), "N/A", _lei(rng).lower(), ""])
        elif kind < 0.3:
            attributes["cusip"] = rng.choice([isin[2:11], _cusip(rng), "12345"])
        elif kind < 0.45:
            attributes[rng.choice(["name", "issuer_name", "symbol", "currency", "mic"])] = _code(rng, TEXT, 12)
        elif kind < 0.5:
            attributes["code"] = _lei(rng)  # an LEI recognised by content
        else:
            attributes[_code(rng, TEXT, rng.randint(1, 20))] = _code(rng, TEXT, rng.randint(0, 90))
    return {
        "content_hash": content_hash(source, attributes),
        "run_id": run_id,
        "isin": isin,
        "country_code": isin[:2],
        "source": source,
        "line": rng.randint(1, 10**6),
        "attributes": attributes,
        "published_at": PUBLISHED,
        "slot": slot,
    }


def general_path(serde: Serde, golden: Golden | None, value: bytes) -> tuple[bytes, bytes, list[Any]]:
    """What the dedup loop's general path writes for a new ISIN: record, change, index records."""
    event = serde.decode(value).record
    merged = merge_event(None, event)
    index: list[Any] = []
    if golden is not None:
        golden.apply(merged)
        index = list(golden.index_changes(event["isin"], None, merged))
    slot = event["published_at"] if event["slot"] is None else event["slot"]
    (change,) = listing_changes(event["isin"], None, merged, event["run_id"], epoch_ms(slot), CLOCK_MS)
    return (
        serde.encode("isin.current", CURRENT_RECORD, merged),
        serde.encode("isin.changes", LISTING_CHANGE, change),
        index,
    )


@pytest.mark.parametrize("registry", [None, {"url": "mock://fresh"}])
@pytest.mark.parametrize("with_golden", [True, False])
@pytest.mark.parametrize("with_changes", [True, False])
def test_a_new_isins_writes_are_the_general_paths(
    registry: dict[str, str] | None, with_golden: bool, with_changes: bool
) -> None:
    serde = make_serde({"url": f"{registry['url']}-{with_golden}-{with_changes}"} if registry else None)
    rng = random.Random(11)
    golden = Golden(GoldenConfig(order=("gleif",)), 12) if with_golden else None
    output = ListOutput()
    changes_topic = "isin.changes" if with_changes else None
    fresh = FreshIsin(serde, output, "isin.current", changes_topic, golden, lambda: CLOCK_MS / 1000)
    cut = 0
    for slot in (None, 1_794_960_000_000):
        encode = EventEncoder(serde, "isin.events", "gleif", "run-1", PUBLISHED, slot_ms=slot)
        for _ in range(400):
            event = random_event(rng, "gleif", "run-1", slot)
            for value in (
                encode(event["isin"], event["line"], event["attributes"], event["content_hash"]),
                serde.encode("isin.events", ISIN_EVENT, event),
            ):
                before = len(output.index_records)
                key = event["isin"].encode()
                record = fresh(3, key, value)
                assert record is not None
                cut += 1
                expected_record, expected_change, expected_index = general_path(serde, golden, value)
                assert record == expected_record
                assert output.sent[-1] == (3, key, expected_record)
                if with_changes:
                    assert output.changes[-1] == (3, key, expected_change)
                assert output.index_records[before:] == expected_index
    assert cut == 1600
    assert len(output.changes) == (1600 if with_changes else 0)
    if with_golden:  # the generated events did reach conflicts and recognised identifiers
        records = [serde.decode(value).record for _, _, value in output.sent]
        assert any(r["conflicts"] for r in records)
        assert any("lei" in r["golden"] and "lei" not in r["listings"][0]["attributes"] for r in records)
        # the CUSIP or SEDOL inside the ISIN, alone and beside a source's own (the two ways the
        # one-listing view is built)
        derived = [r for r in records if any(v["source"] == "derived" for v in r["golden"].values())]
        assert any("cusip" not in r["listings"][0]["attributes"] for r in derived)
        assert any("cusip" in r["listings"][0]["fields"] for r in derived)


def _declined(serde: Serde, event: dict[str, Any]) -> dict[str, bytes]:
    """``event`` encoded, then changed in the ways the fresh path must leave to the general path."""
    value = serde.encode("isin.events", ISIN_EVENT, event)
    key, digest = event["isin"].encode(), event["content_hash"].encode()
    plain = b"\x04\x02a\x021\x04bb\x0422\x00"
    assert plain in value and b"\x20" + digest in value and b"\x18" + key + b"\x04" in value
    other_schema = bytearray(value)
    other_schema[2:10] = END_OF_RUN.fingerprint
    return {
        "map block with its size": value.replace(plain, b"\x03\x14\x02a\x021\x04bb\x0422\x00"),
        "map in two blocks": value.replace(plain, b"\x02\x02a\x021\x02\x04bb\x0422\x00"),
        "a name twice (the last counts)": value.replace(plain, b"\x04\x02a\x021\x02a\x0422\x00"),
        "hash length in two bytes": value.replace(b"\x20" + digest, b"\xa0\x00" + digest),
        "ISIN length in two bytes": value.replace(b"\x18" + key, b"\x98\x00" + key),
        "hash not UTF-8": value.replace(digest, b"\xff" + digest[1:]),
        "country not UTF-8": value.replace(b"\x18" + key + b"\x04" + key[:2], b"\x18" + key + b"\x04\xc3("),
        "another schema": bytes(other_schema),
        "truncated": value[:-3],
        "trailing bytes": value + b"\x00",
    }


def test_what_is_not_cut_exactly_goes_to_the_general_path(tmp_path: Path) -> None:
    serde = make_serde(None)
    write = FreshWriter(serde, "isin.current", "isin.changes")
    event = {**random_event(random.Random(5), "s", "r", None), "attributes": {"a": "1", "bb": "22"}}
    value = serde.encode("isin.events", ISIN_EVENT, event)
    key = event["isin"].encode()
    assert write.parts(key, value) is not None
    assert write.parts(b"US0378331005", value) is None  # another ISIN's key
    assert write.parts(key, b"not avro") is None
    declined = _declined(serde, event)
    for why, other in declined.items():
        assert write.parts(key, other) is None, why
    long_key = {**event, "isin": "X" * 70}  # a key of 64 bytes or more: a two-byte length
    assert write.parts(b"X" * 70, serde.encode("isin.events", ISIN_EVENT, long_key)) is None
    # through the loop, each goes the general path: written as it writes it, or rejected with a reason
    golden = Golden(GoldenConfig(), 6)
    for n, (why, other) in enumerate(declined.items()):
        dedup, store, _ = _loop(serde, tmp_path / f"seen-declined-{n}.rdb", golden)
        joined = _count_joined(lambda d=dedup, o=other: asyncio.run(d.process(0, [RawRecord(0, key, o)])))
        assert joined == 0, why
        try:
            decoded = serde.decode(other)
        except SerializationError:
            decoded = None
        if decoded is None or decoded.schema is not ISIN_EVENT:
            assert dedup.stats.rejected == 1 and store.get(0, key) is None, why
        else:
            assert store.get(0, key) == general_path(serde, golden, other)[0], why
            assert dedup.stats.new == 1 and dedup.stats.rejected == 0, why


def _loop(serde: Serde, seen_path: Path, golden: Golden) -> tuple[Dedup, DictTableStore, ListOutput]:
    """A dedup loop with the golden view and the change topic, on the unit fakes, its clock fixed."""
    store, output = DictTableStore(), ListOutput()
    seen = SeenIndex(seen_path)
    seen.on_assigned([0])
    dedup = Dedup(
        serde,
        store,
        output,
        seen,
        FakeReindex(()),
        "isin.current",
        changes_topic="isin.changes",
        clock=lambda: CLOCK_MS / 1000,
        golden=golden,
    )
    return dedup, store, output


def _count_joined(run: Callable[[], object], fresh: bool = True) -> int:
    """How many new ISINs ``run`` had the fresh path write (with ``fresh`` False, it writes none:
    every event takes the general path)."""
    joined = 0
    original = FreshIsin.__call__

    def counted(self: FreshIsin, partition: int, key: bytes, value: bytes) -> bytes | None:
        nonlocal joined
        written = original(self, partition, key, value) if fresh else None
        joined += written is not None
        return written

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FreshIsin, "__call__", counted)
        run()
    return joined


def _events(serde: Serde, path: Path, source: str, run_id: str, first: int, amend: bool = False) -> list[RawRecord]:
    encode = EventEncoder(serde, "isin.events", source, run_id, PUBLISHED)
    out = []
    for row in rows_of(path):
        try:
            isin = validate_isin(row.isin)
        except InvalidIsin:
            continue
        attributes = {**row.attributes, "amended": run_id} if amend else row.attributes
        value = encode(isin, row.line, attributes, content_hash(source, attributes))
        out.append(RawRecord(first + len(out), isin.encode(), value))
    return out


def _day(tmp_path: Path, serde: Serde, events: list[RawRecord], fresh: bool, name: str = "") -> tuple[ListOutput, int]:
    """The events through a dedup loop: what it wrote, and how many new ISINs it joined from bytes."""
    dedup, _, output = _loop(
        serde, tmp_path / f"seen-{name}-{fresh}.rdb", Golden(GoldenConfig(order=("xetra", "nse")), 6)
    )

    def run() -> None:
        for first in range(0, len(events), 500):
            asyncio.run(dedup.process(0, events[first : first + 500]))

    joined = _count_joined(run, fresh)
    return output, joined


def test_the_loop_writes_the_same_day_either_way_on_real_lists(tmp_path: Path) -> None:
    """Xetra's list (WKNs, mnemonics, names) and NSE's: new ISINs; then Xetra's again with every
    row amended (the general path): both ways, the loop writes the same records, changes and
    index records."""
    serde = make_serde(None)
    events = _events(serde, XETRA, "xetra", "x1", 0)
    events += _events(serde, NSE, "nse", "n1", len(events))
    news = len({r.key for r in events})
    events += _events(serde, XETRA, "xetra", "x2", len(events), amend=True)
    assert news > 4_000
    fast, joined = _day(tmp_path, serde, events, True)
    general, none = _day(tmp_path, serde, events, False)
    assert joined == news and none == 0
    assert len(fast.sent) == len(general.sent) > news
    assert fast.sent == general.sent
    assert fast.changes == general.changes
    assert fast.index_records == general.index_records


def test_the_loop_writes_the_same_either_way_with_a_registry_and_a_slot(tmp_path: Path) -> None:
    """Generated events in the Confluent wire format, of a run with a slot, each ISIN twice (the
    second row of the same run goes the general path), through the loop both ways."""
    serde = make_serde({"url": "mock://fresh-loop"})
    rng = random.Random(23)
    slot = 1_794_960_000_000
    encode = EventEncoder(serde, "isin.events", "gleif", "run-9", PUBLISHED, slot_ms=slot)
    events: list[RawRecord] = []
    for _ in range(300):
        event = random_event(rng, "gleif", "run-9", slot)
        for attributes in (event["attributes"], {**event["attributes"], "second row": "yes"}):
            value = encode(event["isin"], event["line"], attributes, content_hash("gleif", attributes))
            events.append(RawRecord(len(events), event["isin"].encode(), value))
    fast, joined = _day(tmp_path, serde, events, True, "registry")
    general, none = _day(tmp_path, serde, events, False, "registry")
    assert joined == 300 and none == 0
    assert len(fast.sent) == 600 and fast.sent == general.sent
    assert fast.changes == general.changes and len(fast.changes) >= 600
    assert fast.index_records == general.index_records
    assert serde.decode(fast.changes[0][2]).record["slot"].timestamp() * 1000 == slot
