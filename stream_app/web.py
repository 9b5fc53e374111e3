"""The read-only HTTP API of a stream worker: Faust views, defined here, registered by ``register``.

``GET /isins/{isin}`` answers on any worker: from its own partition, or from its standby copy of
the ISIN's partition when that copy is caught up (``QUERY_STANDBYS``), or else through Faust's
router (``app.router.route_req``), which forwards it to the owner, once (a hop header turns a
second forward, possible for a moment during a rebalance, into a 503 instead of a loop). The
header ``X-Isin-Pipeline-Served-By`` says which: ``owner``, ``standby`` or ``forwarded``.
``GET /isins`` and ``GET /stats`` gather the answers of every worker. Every record has the one
JSON form of ``records.record_json``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from faust.exceptions import SameNode
from faust.types import TP
from faust.web import Request, Response
from faust.web.exceptions import ServiceUnavailable
from yarl import URL

from core.isin import InvalidIsin, validate_isin
from core.kafka import partition_for
from schemas import jsonable
from stream_app.context import StreamContext
from stream_app.faust import standby_caught_up, table_ready
from stream_app.feed import FeedUnavailable
from stream_app.records import record_json
from stream_app.store import KeyCounts
from stream_app.web_base import HOP_HEADER, MAX_PAGE, SERVED_BY_HEADER, ApiView, ident
from stream_app.web_golden import Conflicts, Lookup

logger = logging.getLogger(__name__)


class Metrics(ApiView):
    route = "/metrics"

    async def get(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return self.bytes(generate_latest(self.ctx.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])


class Liveness(ApiView):
    route = "/livez"

    async def get(self, request: Request) -> Response:
        return self.json({"status": "alive"})


class Health(ApiView):
    route = "/healthz"

    async def get(self, request: Request) -> Response:
        if self.app.should_stop:
            return self.error(503, "stopping")
        if not self.ready():
            return self.error(503, "recovering the table or rebalancing")
        return self.json({"status": "ok", "partitions": self.local_partitions()})


class Isin(ApiView):
    route = "/isins/{isin}"

    async def get(self, request: Request, isin: str) -> Response:
        try:
            value = validate_isin(isin)
        except InvalidIsin as exc:
            return self.error(400, exc.reason, isin=isin)
        if "as_of" in request.query:  # the record as it stood then: from the owner's history
            return await answer_history(self, request, value, as_of=True)
        key = value.encode()
        ctx = self.ctx
        partition = partition_for(key, ctx.settings.topic_partitions)
        topic_partition = TP(ctx.settings.topic_current, partition)
        # the assignment the router's key_store reads too: this worker's actives, a set lookup
        mine = self.app.assignor.is_active(topic_partition)
        from_standby = not mine and ctx.settings.query_standbys and standby_caught_up(self.app, topic_partition)
        raw = ctx.store.get(partition, key) if mine or from_standby else None
        served_by = "owner" if mine else "standby"
        if raw is None and not mine:
            # the owner answers for its partition, and decides a miss (an ISIN may have been
            # added since a standby copy's last fetch)
            try:
                owner = self.app.router.key_store(ctx.table.name, key)
            except KeyError:
                return self.error(503, "no worker owns this ISIN's partition yet (rebalancing); retry", isin=value)
            forwarded = await self._forward(request, key, owner, value)
            if forwarded is not None:
                return forwarded
            raw, served_by = ctx.store.get(partition, key), "owner"  # it became ours meanwhile
        headers = {SERVED_BY_HEADER: served_by}
        if raw is None and not self.ready():  # a partition being recovered may not hold it yet
            return self.error(503, "the table is recovering or rebalancing; retry", isin=value, headers=headers)
        if raw is None:
            return self.error(404, "not found", isin=value, headers=headers)
        return self.json(ctx.record_json(raw), headers=headers)

    async def _forward(self, request: Request, key: bytes, owner: Any, value: str) -> Response | None:
        """The owner's answer, through Faust's router; None if the partition became ours meanwhile."""
        if request.headers.get(HOP_HEADER):
            return self.error(503, "the cluster is rebalancing; retry", isin=value)
        try:
            hop = request.clone(headers={**request.headers, HOP_HEADER: "1"})
            response: Response = await self.app.router.route_req(self.ctx.table.name, key, self.app.web, hop)
            response.headers[SERVED_BY_HEADER] = "forwarded"
            return response
        except SameNode:
            return None
        except ServiceUnavailable:
            return self.error(503, "no worker owns this ISIN's partition yet (rebalancing); retry", isin=value)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return self.error(503, f"worker {URL(str(owner)).origin()} is unreachable (rebalancing?); retry: {exc}")


# -- history: GET /isins/{isin}/history and GET /isins/{isin}?as_of= ---------------------------
# Answered by the worker that owns the ISIN's partition (its history feed keeps that partition's
# changes) or by one whose standby history of it has caught up, and forwarded to the owner by any
# other worker, as lookups are. A partition whose history has
# not caught up with the change topic answers 503, never a partial history.


def parse_instant(text: str) -> int:
    """ISO-8601 (a date alone is its midnight UTC; no zone means UTC) as epoch milliseconds."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class IsinHistory(Isin):
    route = "/isins/{isin}/history"

    async def get(self, request: Request, isin: str) -> Response:
        try:
            value = validate_isin(isin)
        except InvalidIsin as exc:
            return self.error(400, exc.reason, isin=isin)
        return await answer_history(self, request, value, as_of=False)


async def answer_history(view: Isin, request: Request, value: str, as_of: bool) -> Response:
    """The history (or, with ``as_of``, the record as it stood) of ``value``, from its owner."""
    ctx = view.ctx
    query = request.query
    try:
        valid_at = parse_instant(query["as_of"]) if as_of else 0
        known_at = parse_instant(query["known_at"]) if as_of and query.get("known_at") else None
    except (KeyError, ValueError) as exc:
        return view.error(400, f"as_of and known_at are ISO-8601 instants: {exc}", isin=value)
    source = query.get("source") or None
    key = value.encode()
    partition = partition_for(key, ctx.settings.topic_partitions)
    try:
        owner = view.app.router.key_store(ctx.table.name, key)
    except KeyError:
        return view.error(503, "no worker owns this ISIN's partition yet (rebalancing); retry", isin=value)
    feed = ctx.history
    served_by = "owner"
    if ident(URL(str(owner))) != ident(URL(str(view.app.conf.canonical_url))):
        if ctx.settings.query_standbys and feed is not None and feed.caught_up(partition):
            served_by = "standby"  # a standby's history feed has caught up with the change topic
        else:
            forwarded = await view._forward(request, key, owner, value)
            if forwarded is not None:
                return forwarded
    if feed is None or not feed.caught_up(partition):
        return view.error(503, f"the history of partition {partition} is catching up with the change topic; retry")
    headers = {SERVED_BY_HEADER: served_by}
    loop = asyncio.get_running_loop()  # a read may wait for the feed process: not on the event loop
    try:
        if not as_of:
            found = await loop.run_in_executor(None, feed.store.changes, partition, value, source)
            return view.json({"isin": value, "changes": [jsonable(c) for c in found]}, headers=headers)
        record: Any = await loop.run_in_executor(None, feed.store.as_of, partition, value, valid_at, known_at, source)
    except FeedUnavailable as exc:
        return view.error(503, f"the history of partition {partition} cannot be read now ({exc}); retry")
    if record is None:
        return view.error(404, "no source listed it then", isin=value, as_of=query["as_of"], headers=headers)
    return view.json(record_json(record), headers=headers)


class IsinList(ApiView):
    route = "/isins"

    async def get(self, request: Request) -> Response:
        query = request.query
        prefix = query.get("prefix", "").upper()
        after = query.get("after", "").upper()
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            return self.error(400, "limit must be a whole number")
        if not 1 <= limit <= MAX_PAGE:
            return self.error(400, f"limit must be between 1 and {MAX_PAGE}")
        if any(not (v.isascii() and v.isalnum() and len(v) <= 12) for v in (prefix, after) if v):
            return self.error(400, "prefix and after must be at most 12 ASCII letters and digits")
        if not self.ready():  # a page missing a partition being recovered would skip its ISINs for good
            return self.error(503, "the table is recovering or rebalancing; retry")
        items = self.local_page(prefix, after, limit)
        if not request.headers.get(HOP_HEADER):
            url_query = {"prefix": prefix, "after": after, "limit": str(limit)}
            results = await asyncio.gather(
                *(self.fetch_peer(request, peer.with_path("/isins").with_query(url_query)) for peer in self.peers()),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException) or result[0] != 200:
                    return self.error(503, "a worker did not answer; retry", detail=repr(result))
                items.extend(result[1]["items"])
            items.sort(key=lambda item: item["isin"])
            items = items[:limit]
        body: dict[str, Any] = {"items": items, "count": len(items)}
        if len(items) == limit:
            body["next"] = f"/isins?prefix={prefix}&limit={limit}&after={items[-1]['isin']}"
        return self.json(body)

    def local_page(self, prefix: str, after: str, limit: int) -> list[dict[str, Any]]:
        ctx = self.ctx
        start = max(prefix, after).encode()
        pfx = prefix.encode()
        after_b = after.encode()

        def scan(partition: int) -> Iterator[tuple[bytes, bytes]]:
            for key, value in ctx.store.items(partition, start):
                if not key.startswith(pfx):
                    return
                if key > after_b:
                    yield key, value

        out = []
        for _key, value in heapq.merge(*(scan(p) for p in self.local_partitions())):
            out.append(ctx.record_json(value))
            if len(out) >= limit:
                break
        return out


class Stats(ApiView):
    route = "/stats"

    async def get(self, request: Request) -> Response:
        local = self.local_stats()
        if request.headers.get(HOP_HEADER):
            return self.json(local)
        workers = [local]
        peers = self.peers()
        results = await asyncio.gather(
            *(self.fetch_peer(request, peer.with_path("/stats")) for peer in peers), return_exceptions=True
        )
        complete = True
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, BaseException) or result[0] != 200:
                complete = False
                workers.append({"worker": str(peer), "error": repr(result)})
            else:
                workers.append(result[1])
        total = sum(w.get("isins", 0) for w in workers)
        conflicts: dict[str, int] = {}
        for worker in workers:
            for pair, count in (worker.get("conflicts") or {}).items():
                conflicts[pair] = conflicts.get(pair, 0) + count
        return self.json(
            {
                "isins": total,
                "complete": complete,
                "ready": self.ready(),
                "conflicts": dict(sorted(conflicts.items())),
                "workers": workers,
            }
        )

    def local_stats(self) -> dict[str, Any]:
        counts = self.ctx.table_counts()
        return {
            "worker": str(self.app.conf.canonical_url),
            "isins": sum(counts.values()),
            "partitions": {str(p): n for p, n in counts.items()},
            "ready": self.ready(),
            "dedup": self.ctx.dedup.stats.as_dict(),
            "conflicts": conflict_counts(self.ctx, self.local_partitions()),
            "feeds": {  # records of the change and identifier topics not yet in this worker's stores
                name: feed.lag() if feed is not None else None
                for name, feed in (("history", self.ctx.history), ("identifiers", self.ctx.index))
            },
        }


def conflict_counts(ctx: StreamContext, partitions: list[int]) -> dict[str, int]:
    """Conflicts by ``field:source|other source``, over ``partitions``, as last counted."""
    if ctx.conflicts is None:
        return {}
    counts = ctx.conflicts.counts(partitions)
    return {f"{field}:{a}|{b}": n for (field, a, b), n in sorted(counts.items())}


def _views() -> tuple[type[ApiView], ...]:
    return (Metrics, Liveness, Health, Isin, IsinHistory, IsinList, Stats, Lookup, Conflicts)


def register(app: Any, ctx: StreamContext) -> None:
    """Register the views, and the table size and lag that /stats and /metrics report."""
    settings = ctx.settings

    def local_partitions() -> list[int]:
        return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.topic_current)

    ctx.table_counts = KeyCounts(
        ctx.store.count, local_partitions, ctx.dedup.net_keys, lambda: (app.consumer_generation_id, table_ready(app))
    )

    def lag() -> dict[int, int]:
        consumer = app.consumer
        return consumer.lag(settings.topic_raw) if hasattr(consumer, "lag") else {}

    def conflicts() -> Mapping[tuple[str, str, str], int]:
        return ctx.conflicts.counts(local_partitions()) if ctx.conflicts is not None else {}

    ctx.metrics.register_state(lambda: ctx.dedup.stats, lag, ctx.table_counts, conflicts)
    cors = _cors_options(settings.cors_origins)
    for view in _views():
        app.page(view.route, cors_options=None if view is Metrics else cors)(view)


def _cors_options(origins: list[str]) -> dict[str, Any] | None:
    """CORS is off unless origins are configured; then GET only, no credentials."""
    if not origins:
        return None
    from aiohttp_cors import ResourceOptions

    return {
        origin: ResourceOptions(allow_credentials=False, allow_methods=["GET"], expose_headers=[])  # type: ignore[no-untyped-call]
        for origin in origins
    }
