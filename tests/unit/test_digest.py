"""The table digest: its answers against the loop's own test, and the dedup loop with and without it."""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path

import pytest

from schemas import CURRENT_RECORD, make_serde
from stream_app import digest as digest_module
from stream_app.dedup import Dedup
from stream_app.digest import ABSENT, READ, UNCHANGED, Digests, PartitionDigest, build, held_hashes
from stream_app.records import listing_hashes
from tests.unit.fakes import DictTableStore
from tests.unit.test_dedup import Harness

SERDE = make_serde(None)
HEX = "0123456789abcdef"


def stored(hashes: str) -> bytes:
    """A stored CurrentRecord whose listing_hashes are ``hashes`` (the digest reads only that field)."""
    return SERDE.encode(
        "current",
        CURRENT_RECORD,
        {
            "listing_hashes": hashes,
            "isin": "US0378331005",
            "country_code": "US",
            "listings": [],
            "change": "NEW",
            "updated_at": 0,
        },
    )


@pytest.mark.parametrize("registry", [None, {"url": "mock://digest"}])
def test_a_single_hash_is_sliced_as_the_record_is_read(registry: dict[str, str] | None) -> None:
    """The build's shortcut for a record of one hash gives what reading the field gives, in both
    wire formats, for every length of hashes around the shortcut's."""
    serde = make_serde(registry)
    rng = random.Random(5)
    seen_lengths = set()
    for _ in range(300):
        hashes = "".join(rng.choice(HEX + " ") for _ in range(rng.choice([0, 1, 15, 16, 16, 16, 17, 33, 70])))
        value = serde.encode(
            "current",
            CURRENT_RECORD,
            {
                "listing_hashes": hashes,
                "isin": "X",
                "country_code": "",
                "listings": [],
                "change": "NEW",
                "updated_at": 0,
            },
        )
        assert held_hashes(value) == listing_hashes(value) == hashes.encode()
        seen_lengths.add(len(hashes))
    assert {0, 16, 17, 70} <= seen_lengths
    assert held_hashes(b"\x00\x00\x00\x00\x01") == b" "  # cut short: read from the store, never decided here


def truth(model: dict[bytes, bytes], key: bytes, digest: bytes) -> int:
    """What the loop decides from the stored record: absent, unchanged, or changed (READ)."""
    if key not in model:
        return ABSENT
    return UNCHANGED if digest in model[key] else READ


def a_key(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.85:
        return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(12)).encode()
    if kind < 0.9:
        return "".join(rng.choice("abcxyz0189") for _ in range(12)).encode()  # lower case: not base 36 here
    if kind < 0.95:
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.choice([3, 11, 13]))).encode()
    return ("".join(rng.choice(string.ascii_uppercase) for _ in range(11)) + rng.choice("é-_ ")).encode()


def a_hash(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.9:
        return "".join(rng.choice(HEX) for _ in range(16)).encode()
    if kind < 0.95:
        return "".join(rng.choice("ABCDEF0123") for _ in range(16)).encode()  # upper-case hex
    return "".join(rng.choice(HEX) for _ in range(rng.choice([8, 15, 17]))).encode()


def some_hashes(rng: random.Random) -> bytes:
    return b" ".join(a_hash(rng) for _ in range(rng.choice([1, 1, 1, 2, 3])))


@pytest.mark.parametrize("seed", range(6))
def test_the_digest_answers_as_the_stored_records_do(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_module, "FOLD_MIN", 40)  # fold often: the arrays and the dict both answer
    rng = random.Random(seed)
    model = {a_key(rng): some_hashes(rng) for _ in range(300)}
    digest = PartitionDigest()
    items = list(model.items())
    digest.load(items[:150])
    digest.load(items[150:])
    digest.fold()
    exact_queries = unseen_checks = 0
    ever = {key: list(hashes.split(b" ")) for key, hashes in model.items()}  # every hash a key ever had
    for _round in range(30):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randrange(1, 30)):
            known = list(model)
            key = rng.choice(known) if known and rng.random() < 0.6 else a_key(rng)
            if rng.random() < 0.25:
                changes[key] = None
                model.pop(key, None)
            else:
                hashes = some_hashes(rng)
                changes[key] = stored(hashes.decode())
                model[key] = hashes
                ever.setdefault(key, []).extend(hashes.split(b" "))
        digest.update(changes)
        if _round % 3 == 2:  # a sweep's question (it folds: not every round, so the dict answers too)
            seen = [k for k in model if rng.random() < 0.8] + [a_key(rng) for _ in range(5)] + rng.sample(list(ever), 3)
            seen += seen[: len(seen) // 4]  # a key may come more than once
            rng.shuffle(seen)
            given = set(seen)
            assert asyncio.run(digest.unseen(iter(seen), rng.choice([1, 7, 1000]))) == sorted(
                k for k in model if k not in given
            )
            assert digest.keys_held() == len(model)
            unseen_checks += 1
        keys: list[bytes] = []
        digests: list[bytes] = []
        for _ in range(200):
            pick = rng.random()
            if pick < 0.5 and model:  # a key held now, with one of its hashes or another
                key = rng.choice(list(model))
                digests.append(rng.choice(model[key].split(b" ")) if rng.random() < 0.6 else a_hash(rng))
            elif pick < 0.8:  # a key held once (deleted, or changed since), with a hash it had
                key = rng.choice(list(ever))
                digests.append(rng.choice(ever[key]))
            else:
                key = a_key(rng)
                digests.append(a_hash(rng))
            keys.append(key)
        for key, digest_, verdict in zip(keys, digests, digest.classify(keys, digests), strict=True):
            expected = truth(model, key, digest_)
            if len(digest_) == 16 and all(c in HEX.encode() for c in digest_):
                assert verdict == expected, (key, digest_)  # a producer's content hash: answered exactly
                exact_queries += 1
            else:  # any other hash of a present key may be sent to the store (which decides as before)
                assert verdict == expected or (verdict == READ and expected == UNCHANGED), (key, digest_)
    assert exact_queries > 4000
    assert unseen_checks == 10
    assert len(digest._keys) > 100


def test_a_key_with_many_rows_is_found_by_every_hash() -> None:
    hashes = [f"{i:016x}".encode() for i in range(7)]
    digest = PartitionDigest()
    digest.load([(b"US0378331005", b" ".join(hashes)), (b"US0378331006", hashes[0]), (b"DE0007236101", b"f" * 16)])
    digest.fold()
    keys = [b"US0378331005"] * 7 + [b"US0378331006", b"US0378331006", b"DE0007236100", b"ZZ0000000000"]
    asked = [*hashes, hashes[0], hashes[1], b"f" * 16, b"0" * 16]
    assert digest.classify(keys, asked) == [UNCHANGED] * 7 + [UNCHANGED, READ, ABSENT, ABSENT]


def test_building_from_a_store_reads_every_record_and_unreadable_ones_are_read_again() -> None:
    store = DictTableStore()
    good = "0123456789abcdef"
    store.apply(0, {b"US0378331005": stored(good), b"DE0007236101": b"\x00\xff not a record"}, 1)
    digest = asyncio.run(build(store.items(0), yield_every=1))
    assert digest.classify([b"US0378331005", b"DE0007236101", b"CH0038863350"], [good.encode()] * 3) == [
        UNCHANGED,
        READ,
        ABSENT,
    ]


def test_digests_follow_the_writes_made_through_them_and_are_built_again_after_forget() -> None:
    store = DictTableStore()
    digests = Digests(store)
    key, first, second = b"US0378331005", "0123456789abcdef", "fedcba9876543210"
    store.apply(0, {key: stored(first)}, 1)
    held = asyncio.run(digests.of(0))
    assert held is not None and digests.get(0) is held
    digests.apply(0, {key: stored(second)}, 2)
    assert held.classify([key, key], [first.encode(), second.encode()]) == [READ, UNCHANGED]
    store.apply(0, {key: None}, 3)  # written behind the digests' back (a recovery)
    digests.forget()
    assert digests.get(0) is None
    rebuilt = asyncio.run(digests.of(0))
    assert rebuilt is not None and rebuilt.classify([key], [second.encode()]) == [ABSENT]
    assert asyncio.run(Digests(store, enabled=False).of(0)) is None


class CountingStore(DictTableStore):
    """Counts the keys read from the store."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_read = 0

    def reader(self, partition: int):  # type: ignore[no-untyped-def]
        read = super().reader(partition)

        def counted(keys: list[bytes]) -> list[bytes | None]:
            self.keys_read += len(keys)
            return read(keys)

        return counted


def harness(tmp_path: Path, digest: bool) -> Harness:
    h = Harness(tmp_path)
    h.store = CountingStore()
    h.dedup = Dedup(SERDE, h.store, h.output, h.seen, h.reindex, "current", digest=digest)
    h.seen.on_assigned([0])
    return h


@pytest.mark.parametrize("seed", range(4))
def test_the_loop_writes_the_same_with_and_without_the_digest(tmp_path: Path, seed: int) -> None:
    """Days of two sources' runs (ISINs dropped, changed, back, twice in a run), fed in batches cut at
    random (markers inside batches), and a store written behind the loop's back: the same records
    sent and stored, with about a third of the keys read (the rest: listings changed, or back after a day away),
    and the same listings removed whether a sweep walks the partition or reads its run's missing keys."""
    rng = random.Random(seed)
    pool = ["".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(12)).encode() for _ in range(80)]
    pool += [b"us0378331005", b"SHORT"]  # keys the digest's arrays do not hold
    on, off = harness(tmp_path / "on", True), harness(tmp_path / "off", False)
    first_offsets: dict[str, dict[str, int]] = {"on": {}, "off": {}}  # where each run's first event went
    for day in range(6):
        records: list[tuple[bytes, str, dict[str, str], str] | tuple[None, str, str]] = []
        for source in ("A", "B"):
            run = f"{source}-day{day}"
            listed = rng.sample(pool, rng.randrange(40, len(pool)))
            listed += rng.sample(listed, 3)  # an ISIN on two rows
            for isin in listed:
                records.append((isin, source, {"name": rng.choice(["x"] * 6 + ["y"]) if day else "x"}, run))
            records.append((None, source, run))
        cut = sorted(rng.sample(range(1, len(records)), 3))
        for start, end in zip([0, *cut], [*cut, len(records)], strict=True):
            for name, h in (("on", on), ("off", off)):
                runs_first = first_offsets[name]
                batch = []
                firsts: dict[str, int] = {}
                for item in records[start:end]:
                    if item[0] is None:
                        _, source, run = item
                        events = sum(1 for r in records if r[0] is not None and r[3] == run)
                        batch.append(h.marker(source, run, firsts.get(run, runs_first[run]), events))
                    else:
                        isin, source, attrs, run = item
                        rec = h.event(isin, source=source, attrs=attrs, run=run)
                        runs_first.setdefault(run, rec.offset)
                        firsts.setdefault(run, runs_first[run])
                        batch.append(rec)
                h.feed(*batch)
            assert on.output.sent == off.output.sent
            assert on.store.data == off.store.data
        if day == 3:  # a recovery wrote the store: one record gone, one from another worker's run
            gone, moved = pool[0], pool[1]
            for h in (on, off):
                h.store.apply(0, {gone: None, moved: off.store.data[0].get(pool[2]) or stored("00")}, None)
            on.dedup.forget_digests()
    assert on.dedup.stats.unchanged == off.dedup.stats.unchanged > 200
    assert on.dedup.stats.deleted == off.dedup.stats.deleted > 0
    assert on.store.keys_read * 2 < off.store.keys_read  # type: ignore[attr-defined]
    # sweeps read the records of a run's missing keys where they were few, and walked the rest
    assert 0 < on.dedup.stats.sweeps_read < on.dedup.stats.sweeps == off.dedup.stats.sweeps
    assert off.dedup.stats.sweeps_read == 0


def test_a_key_that_is_not_base_36_never_stands_for_one_that_is() -> None:
    """'#' is no base-36 digit: read as 255 at the last place, "AAAAAAAAAAA#" comes to the same
    number as "AAAAAAAAAAH3" (255 = 7 * 36 + 3). Neither a write nor a load of the one may change
    what the digest says of the other."""
    valid, other, first, second = b"AAAAAAAAAAH3", b"AAAAAAAAAAA#", b"0123456789abcdef", b"fedcba9876543210"
    digest = PartitionDigest()
    digest.load([(valid, first)])
    digest.fold()
    digest.update({other: stored(second.decode())})
    digest.update({other: None})
    digest.fold()
    assert digest.classify([valid, other], [first, second]) == [UNCHANGED, ABSENT]
    loaded = PartitionDigest()
    loaded.load([(valid, first), (other, second)])
    loaded.fold()
    assert loaded.classify([valid, other, valid, other], [first, second, second, first]) == [
        UNCHANGED,
        UNCHANGED,
        READ,
        READ,
    ]
    assert asyncio.run(loaded.unseen(iter([other]))) == [valid]  # the one seen does not stand for the other
    assert asyncio.run(loaded.unseen(iter([valid]))) == [other]
    assert asyncio.run(digest.unseen(iter([other]))) == [valid]
    assert (loaded.keys_held(), digest.keys_held()) == (2, 1)
