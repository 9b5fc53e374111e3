"""The read-only HTTP API of a stream worker, served by Faust's web server.

``GET /isins/{isin}`` answers on any worker: a key owned by another worker's partition is
proxied there once (Faust's table routing, with a hop header against routing loops).
``GET /isins`` and ``GET /stats`` gather the answers of every worker.
"""

from __future__ import annotations

import asyncio
import heapq
import hmac
import logging
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import ClientTimeout
from faust.web import Request, Response, View
from yarl import URL

from core.isin import InvalidIsin, validate_isin
from core.kafka import partition_for
from stream_app.context import StreamContext
from stream_app.records import to_json
from stream_app.store import KeyCounts

logger = logging.getLogger(__name__)

HOP_HEADER = "X-Isin-Pipeline-Hop"
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/metrics"})
MAX_PAGE = 1000


class ApiView(View):
    """Checks the optional bearer token (in constant time) before any handler runs."""

    ctx: StreamContext

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        route = type(self).view_path if hasattr(type(self), "view_path") else request.path
        response = await self._dispatch(request)
        metrics = self.ctx.metrics
        metrics.query_latency.labels(route).observe(time.perf_counter() - started)
        metrics.queries.labels(route, str(getattr(response, "status", 0))).inc()
        return response

    async def _dispatch(self, request: Any) -> Any:
        token = self.ctx.settings.api_token
        if token is not None and request.path not in PUBLIC_PATHS:
            given = request.headers.get("Authorization", "")
            try:
                presented = given.encode("ascii")
            except UnicodeEncodeError:  # aiohttp keeps undecodable bytes as surrogates
                return self.error(400, "malformed Authorization header: not ASCII")
            expected = f"Bearer {token.get_secret_value()}".encode()
            if not hmac.compare_digest(presented, expected):
                return self.error(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        return await super().dispatch(request)

    # -- cluster helpers ----------------------------------------------------------------

    def local_partitions(self) -> list[int]:
        """Table partitions this worker serves as the active owner."""
        actives = self.app.assignor.assigned_actives()
        return sorted(tp.partition for tp in actives if tp.topic == self.ctx.settings.topic_current)

    def peers(self) -> list[URL]:
        """Other workers' web URLs, from the assignor's table metadata."""
        me = _ident(URL(str(self.app.conf.canonical_url)))
        hosts = self.app.router.table_metadata(self.ctx.table.name)
        return [URL(str(h)) for h in hosts if _ident(URL(str(h))) != me]

    async def fetch_peer(self, request: Request, url: URL) -> tuple[int, Any]:
        """GET from another worker; an unreachable worker is a 503 (it is being replaced)."""
        headers = {HOP_HEADER: "1"}
        auth = request.headers.get("Authorization")
        if auth:
            headers["Authorization"] = auth
        try:
            async with self.app.http_client.get(url, headers=headers, timeout=ClientTimeout(total=10)) as resp:
                return resp.status, await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            logger.warning("worker %s did not answer: %s", url.origin(), exc)
            return 503, {"error": f"worker {url.origin()} is unreachable (rebalancing?); retry", "detail": str(exc)}

    def ready(self) -> bool:
        recovery = self.app.tables.recovery
        return bool(recovery.completed.is_set()) and not self.app.rebalancing


def _ident(url: URL) -> tuple[str, int]:
    return (url.host or "", int(url.port or 80))


def register(app: Any, ctx: StreamContext) -> None:
    ApiView.ctx = ctx
    settings = ctx.settings
    partitions = settings.topic_partitions
    cors = _cors_options(settings.cors_origins)

    def local_partitions() -> list[int]:
        actives = app.assignor.assigned_actives()
        return sorted(tp.partition for tp in actives if tp.topic == settings.topic_current)

    def ready() -> bool:
        return bool(app.tables.recovery.completed.is_set()) and not app.rebalancing

    local_counts = KeyCounts(
        ctx.store.count,
        local_partitions,
        ctx.dedup.net_keys,
        lambda: (app.consumer_generation_id, ready()),
    )

    def lag() -> dict[int, int]:
        consumer = app.consumer
        return consumer.lag(settings.topic_raw) if hasattr(consumer, "lag") else {}

    ctx.metrics.register_state(lambda: ctx.dedup.stats, lag, local_counts)

    @app.page("/metrics", base=ApiView)
    class Metrics(ApiView):
        async def get(self, request: Request) -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            body = generate_latest(ctx.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/livez", base=ApiView, cors_options=cors)
    class Liveness(ApiView):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page("/healthz", base=ApiView, cors_options=cors)
    class Health(ApiView):
        async def get(self, request: Request) -> Response:
            if self.app.should_stop:
                return self.error(503, "stopping")
            if not self.ready():
                return self.error(503, "recovering the table or rebalancing")
            return self.json({"status": "ok", "partitions": self.local_partitions()})

    @app.page("/isins/{isin}", base=ApiView, cors_options=cors)
    class Isin(ApiView):
        async def get(self, request: Request, isin: str) -> Response:
            try:
                value = validate_isin(isin)
            except InvalidIsin as exc:
                return self.error(400, exc.reason, isin=isin)
            key = value.encode()
            try:
                dest = self.app.router.key_store(ctx.table.name, key)
            except KeyError:
                return self.error(503, "no worker owns this ISIN's partition yet (rebalancing); retry", isin=value)
            if _ident(URL(str(dest))) != _ident(URL(str(self.app.conf.canonical_url))):
                if request.headers.get(HOP_HEADER):
                    return self.error(503, "the cluster is rebalancing; retry", isin=value)
                status, body = await self.fetch_peer(request, dest.with_path(request.path))
                return self.json(body, status=status)
            partition = partition_for(key, partitions)
            raw = ctx.store.get(partition, key)
            if raw is None:
                return self.error(404, "not found", isin=value)
            return self.json(to_json(ctx.serde.decode(raw).record))

    @app.page("/isins", base=ApiView, cors_options=cors)
    class IsinList(ApiView):
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
            if not prefix.isalnum() and prefix:
                return self.error(400, "prefix must be letters and digits")
            items = self.local_page(prefix, after, limit)
            if not request.headers.get(HOP_HEADER):
                url_query = {"prefix": prefix, "after": after, "limit": str(limit)}
                results = await asyncio.gather(
                    *(
                        self.fetch_peer(request, peer.with_path("/isins").with_query(url_query))
                        for peer in self.peers()
                    ),
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
            start = max(prefix, after).encode()
            pfx = prefix.encode()
            after_b = after.encode()

            def scan(partition: int) -> Iterator[tuple[bytes, bytes]]:
                for key, value in ctx.store.items(partition, start):
                    if not key.startswith(pfx):
                        return
                    if key > after_b:
                        yield key, value

            merged = heapq.merge(*(scan(p) for p in self.local_partitions()))
            out = []
            for _key, value in merged:
                out.append(to_json(ctx.serde.decode(value).record))
                if len(out) >= limit:
                    break
            return out

    @app.page("/stats", base=ApiView, cors_options=cors)
    class Stats(ApiView):
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
            return self.json({"isins": total, "complete": complete, "ready": self.ready(), "workers": workers})

        def local_stats(self) -> dict[str, Any]:
            counts = local_counts()
            return {
                "worker": str(self.app.conf.canonical_url),
                "isins": sum(counts.values()),
                "partitions": {str(p): n for p, n in counts.items()},
                "ready": self.ready(),
                "dedup": ctx.dedup.stats.as_dict(),
            }


def _cors_options(origins: list[str]) -> dict[str, Any] | None:
    """CORS is off unless origins are configured; then GET only, no credentials."""
    if not origins:
        return None
    from aiohttp_cors import ResourceOptions

    return {
        origin: ResourceOptions(allow_credentials=False, allow_methods=["GET"], expose_headers=[])  # type: ignore[no-untyped-call]
        for origin in origins
    }
