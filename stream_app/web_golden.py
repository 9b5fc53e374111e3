"""The golden record's endpoints: ``GET /lookup`` and ``GET /conflicts``.

``GET /lookup?lei=…`` (or ``cusip=``, ``sedol=``, ``figi=``, ``ticker=``) goes to one worker:
the owner of the identifier's partition of the identifier index (``identifier_index.py``), or
a standby whose copy of the index has caught up, found through Faust's router like any key. It
reads the ISINs that carry the identifier from its index and answers them with their records,
read from its own table when it holds their partition and from their owners otherwise.

``GET /conflicts`` gathers every worker's page of the records whose sources disagree, like
``GET /isins``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.exceptions import SameNode
from faust.web import Request, Response
from faust.web.exceptions import ServiceUnavailable
from yarl import URL

from core.golden import FIELDS, LOOKUP_FIELDS, clean
from core.kafka import partition_for
from stream_app.feed import FeedUnavailable
from stream_app.identifier_index import identifier, index_partition
from stream_app.web_base import HOP_HEADER, MAX_PAGE, SERVED_BY_HEADER, ApiView, ident


def _limit(query: Any) -> int:
    limit = int(query.get("limit", "100"))
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    return limit


class Lookup(ApiView):
    route = "/lookup"

    async def get(self, request: Request) -> Response:
        given = [f for f in LOOKUP_FIELDS if f in request.query]
        if len(given) != 1 or len(request.query.getall(given[0])) != 1:
            return self.error(400, f"give exactly one of {', '.join(f'{f}=' for f in LOOKUP_FIELDS)}")
        field_name = given[0]
        value = clean(field_name, request.query[field_name])
        if value is None:
            return self.error(400, f"not a valid {field_name}", value=request.query[field_name][:64])
        try:
            limit = _limit(request.query)
        except ValueError as exc:
            return self.error(400, str(exc))
        after = request.query.get("after", "")
        ctx = self.ctx
        key = identifier(field_name, value)
        partition = index_partition(field_name, value, ctx.settings.topic_partitions)
        feed = ctx.index
        try:
            owner = self.app.router.key_store(ctx.table.name, key)
        except KeyError:
            return self.error(503, "no worker owns this identifier's partition yet (rebalancing); retry")
        served_by = "owner"
        if ident(URL(str(owner))) != ident(URL(str(self.app.conf.canonical_url))):
            if ctx.settings.query_standbys and feed is not None and feed.caught_up(partition):
                served_by = "standby"
            elif request.headers.get(HOP_HEADER):
                return self.error(503, "the cluster is rebalancing; retry")
            else:
                try:
                    hop = request.clone(headers={**request.headers, HOP_HEADER: "1"})
                    response: Response = await self.app.router.route_req(ctx.table.name, key, self.app.web, hop)
                    response.headers[SERVED_BY_HEADER] = "forwarded"
                    return response
                except SameNode:
                    pass  # it became ours meanwhile
                except ServiceUnavailable:
                    return self.error(503, "no worker owns this identifier's partition yet (rebalancing); retry")
        if feed is None or not feed.caught_up(partition):
            return self.error(503, f"the identifier index of partition {partition} is catching up; retry")
        try:  # a read may wait for the feed process: not on the event loop
            found = await asyncio.get_running_loop().run_in_executor(
                None, feed.store.isins, partition, field_name, value
            )
            isins = [i for i in found if i > after][:limit]
        except FeedUnavailable as exc:
            return self.error(503, f"the identifier index of partition {partition} cannot be read now ({exc}); retry")
        records = await asyncio.gather(*(self._record(request, isin) for isin in isins))
        missing = [isin for isin, record in zip(isins, records, strict=True) if record is None]
        if missing:  # the index is a fetch ahead of (or behind) a table partition: never half an answer
            return self.error(503, "a record of this identifier is being written or moved; retry", isins=missing)
        body: dict[str, Any] = {"field": field_name, "value": value, "items": records, "count": len(records)}
        if len(isins) == limit:
            body["next"] = str(URL("/lookup").with_query({field_name: value, "limit": str(limit), "after": isins[-1]}))
        return self.json(body, headers={SERVED_BY_HEADER: served_by})

    async def _record(self, request: Request, isin: str) -> dict[str, Any] | None:
        """The record of ``isin``: from this worker's table if it serves the partition, else its owner's."""
        ctx = self.ctx
        key = isin.encode()
        partition = partition_for(key, ctx.settings.topic_partitions)
        if partition in self.local_partitions():
            raw = ctx.store.get(partition, key)
            return None if raw is None else ctx.record_json(raw)
        try:
            owner = URL(str(self.app.router.key_store(ctx.table.name, key)))
        except KeyError:
            return None
        status, body = await self.fetch_peer(request, owner.with_path(f"/isins/{isin}"))
        return body if status == 200 and isinstance(body, dict) else None


class Conflicts(ApiView):
    route = "/conflicts"

    async def get(self, request: Request) -> Response:
        query = request.query
        field_name = query.get("field") or None
        if field_name is not None and field_name not in FIELDS:
            return self.error(400, f"field must be one of {', '.join(FIELDS)}")
        source = query.get("source") or None
        after = query.get("after", "")
        try:
            limit = _limit(query)
        except ValueError as exc:
            return self.error(400, str(exc))
        if not self.ready():  # a page missing a partition being recovered would skip its ISINs
            return self.error(503, "the table is recovering or rebalancing; retry")
        report = self.ctx.conflicts
        assert report is not None
        partitions = self.local_partitions()
        await asyncio.get_running_loop().run_in_executor(None, report.refresh, partitions)
        items: list[dict[str, Any]] = [
            {"isin": i, "conflicts": c} for i, c in report.page(partitions, field_name, source, after, limit)
        ]
        if not request.headers.get(HOP_HEADER):
            url_query = {k: v for k, v in (("field", field_name), ("source", source)) if v}
            url_query |= {"after": after, "limit": str(limit)}
            results = await asyncio.gather(
                *(self.fetch_peer(request, peer.with_path("/conflicts").with_query(url_query)) for peer in self.peers())
            )
            for status, body in results:
                if status != 200:
                    return self.error(503, "a worker did not answer; retry", detail=body)
                items.extend(body["items"])
            items.sort(key=lambda item: item["isin"])
            items = items[:limit]
        body_out: dict[str, Any] = {"items": items, "count": len(items)}
        if len(items) == limit:
            url_query = {k: v for k, v in (("field", field_name), ("source", source)) if v}
            url_query |= {"limit": str(limit), "after": items[-1]["isin"]}
            body_out["next"] = str(URL("/conflicts").with_query(url_query))
        return self.json(body_out)
