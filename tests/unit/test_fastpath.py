"""The hand-written IsinEvent encoder writes exactly what fastavro writes; prefix reads."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from schemas import CURRENT_RECORD, ISIN_EVENT, content_hash, make_serde
from schemas.fastpath import EventEncoder, hash_and_run, leading_strings, zigzag_varint

TEXT = string.ascii_letters + string.digits + " .,;-_/ÄÖÜéèñ€“”漢字"


def random_record(rng: random.Random, source: str, run_id: str, published_at: int) -> dict[str, Any]:
    attributes = {
        "".join(rng.choices(TEXT, k=rng.randint(1, 20))): "".join(rng.choices(TEXT, k=rng.randint(0, 90)))
        for _ in range(rng.choice([0, 0, 1, 2, 5, 70]))
    }
    isin = (
        rng.choice(["US", "DE", "XS", "IN"])
        + "".join(rng.choices(string.ascii_uppercase + string.digits, k=9))
        + str(rng.randint(0, 9))
    )
    return {
        "content_hash": content_hash(source, attributes),
        "run_id": run_id,
        "isin": isin,
        "country_code": isin[:2],
        "source": source,
        "line": rng.choice([1, 2, 63, 64, 127, 128, 8191, 8192, 10**7, 2**40]),
        "attributes": attributes,
        "published_at": published_at,
    }


@pytest.mark.parametrize("slot", [None, 1_794_960_000_000])
@pytest.mark.parametrize("registry", [None, {"url": "mock://fastpath"}])
def test_the_event_encoder_writes_what_fastavro_writes(registry: dict[str, str] | None, slot: int | None) -> None:
    serde = make_serde({"url": f"{registry['url']}-{slot}"} if registry else None)
    rng = random.Random(42)
    source, run_id, published_at = (
        "https://lists.example/ISIN täglich.csv",
        "20261122T071500Z-1a2b3c4d",
        1_795_000_000_123,
    )
    encode = EventEncoder(serde, "isin.events", source, run_id, published_at, slot_ms=slot)
    for _ in range(2000):
        record = {**random_record(rng, source, run_id, published_at), "slot": slot}
        fast = encode(record["isin"], record["line"], record["attributes"], record["content_hash"])
        assert fast == serde.encode("isin.events", ISIN_EVENT, record)
        decoded = serde.decode(fast).record
        assert decoded["attributes"] == record["attributes"] and decoded["line"] == record["line"]


def test_leading_strings_read_the_first_fields_in_both_wire_formats() -> None:
    for registry in (None, {"url": "mock://fastpath-2"}):
        serde = make_serde(registry)
        rng = random.Random(1)
        record = random_record(rng, "s", "run-7", 1)
        value = serde.encode("t", ISIN_EVENT, record)
        assert leading_strings(value, 2) == [record["content_hash"].encode(), b"run-7"]
        current = {
            "listing_hashes": "a b",
            "isin": "X",
            "country_code": "XX",
            "listings": [],
            "change": "NEW",
            "updated_at": 0,
        }
        assert leading_strings(serde.encode("c", CURRENT_RECORD, current), 1) == [b"a b"]


def test_hash_and_run_reads_what_leading_strings_reads_whatever_the_bytes() -> None:
    """Events of every shape in both wire formats, cut short at every length and with bytes
    flipped: the same two strings, or the same exception, as ``leading_strings(value, 2)``."""

    def outcome(read: Any, value: bytes) -> Any:
        try:
            return read(value)
        except Exception as exc:
            return type(exc)

    rng = random.Random(8)
    compared = sliced = 0
    for registry in (None, {"url": "mock://fastpath-hash-and-run"}):
        serde = make_serde(registry)
        for n in range(120):
            record = random_record(rng, "s", "r" * rng.choice([0, 1, 31, 63, 64, 200]), n)
            if n % 3 == 0:
                record["content_hash"] = "".join(rng.choices("0123456789abcdef", k=rng.choice([15, 16, 17])))
            value = serde.encode("t", ISIN_EVENT, record)
            variants = [value[:cut] for cut in range(0, 40)] + [value]
            flipped = bytearray(value)
            flipped[rng.randrange(min(30, len(value)))] ^= 1 << rng.randrange(8)
            variants.append(bytes(flipped))
            for v in variants:
                expected = outcome(lambda x: leading_strings(x, 2), v)
                assert outcome(hash_and_run, v) == expected, v
                compared += 1
            sliced += len(record["content_hash"]) == 16 and len(record["run_id"]) < 64
    assert compared > 9000 and sliced > 50


def test_a_producers_event_is_sliced_without_leading_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    import schemas.fastpath as fastpath

    calls: list[int] = []
    monkeypatch.setattr(fastpath, "leading_strings", lambda value, count: calls.append(count) or [b"", b""])
    rng = random.Random(9)
    for registry in (None, {"url": "mock://fastpath-sliced"}):
        serde = make_serde(registry)
        for n in range(20):
            record = random_record(rng, "s", "r" * rng.choice([0, 1, 63]), n)
            record["content_hash"] = "".join(rng.choices("0123456789abcdef", k=16))
            value = serde.encode("t", ISIN_EVENT, record)
            assert hash_and_run(value) == [record["content_hash"].encode(), record["run_id"].encode()]
        record["run_id"] = "r" * 64  # a two-byte length: the general reader
        assert hash_and_run(serde.encode("t", ISIN_EVENT, record)) == [b"", b""]
    assert calls == [2, 2]


def test_zigzag_varints_are_fastavros_longs_at_every_width() -> None:
    from io import BytesIO

    from fastavro.io.binary_encoder import BinaryEncoder

    def fastavro_long(n: int) -> bytes:
        out = BytesIO()
        encoder = BinaryEncoder(out)
        encoder.write_long(n)
        encoder.flush()
        return out.getvalue()

    edges = [0, 1, 63, 64, 8191, 8192, 8193, 2**13, 2**14, 2**20 - 1, 2**20, 2**21, 2**35, 2**62, -1, -8192, -(2**20)]
    for n in edges + list(range(8180, 8200)) + random.Random(2).sample(range(-(2**22), 2**22), 5000):
        assert zigzag_varint(n) == fastavro_long(n), n


def test_zigzag_varints_match_the_avro_specification() -> None:
    # From the Avro specification's table of zig-zag encoded longs.
    assert [zigzag_varint(n) for n in (0, -1, 1, -2, 2, -64, 64)] == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x03",
        b"\x04",
        b"\x7f",
        b"\x80\x01",
    ]


def test_change_keys_read_what_decoding_reads_and_decline_other_writers() -> None:
    from schemas import LISTING_CHANGE
    from schemas.fastpath import change_keys
    from stream_app.changes import listing_changes

    serde = make_serde(None)
    encode = serde.encoder("isin.changes", LISTING_CHANGE)
    rng = random.Random(7)
    checked = 0
    for n in range(200):
        isin = f"US{n:09d}0"
        attrs = {f"k{i}": "é" * rng.randint(0, 90) for i in range(rng.randint(0, 4))}
        before = None if n % 3 == 0 else {"isin": isin, "listings": [_listing("s" * rng.randint(1, 80), {"x": "1"})]}
        after = {"isin": isin, "listings": [_listing("s" * rng.randint(1, 80), attrs)]}
        slot = rng.randint(0, 2**45)
        for change in listing_changes(isin, before, after, "r" * rng.randint(1, 70), slot, slot + 5):
            value = encode(change)
            assert change_keys(value) == (change["change_id"].encode(), isin.encode(), slot)
            checked += 1
    assert checked >= 200
    assert change_keys(b"\x00\x00\x00\x00\x01" + value[10:]) is None  # the Confluent format: decode it


def _listing(source: str, attributes: dict[str, str]) -> dict[str, object]:
    return {
        "source": source,
        "attributes": attributes,
        "content_hash": "h",
        "run_id": "r",
        "first_seen_at": 0,
        "changed_at": 0,
    }
