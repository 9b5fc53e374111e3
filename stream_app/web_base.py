"""The base of the HTTP API's views (``ApiView``: the bearer token, metrics, the cluster through
Faust's assignor and router), for ``web.py`` and ``web_golden.py``."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import aiohttp
from aiohttp import ClientTimeout
from faust.web import Request, View
from yarl import URL

from stream_app.context import StreamContext
from stream_app.faust import stream_context, table_ready

logger = logging.getLogger(__name__)

HOP_HEADER = "X-Isin-Pipeline-Hop"
DOWNLOAD_HEADER = "X-Isin-Pipeline-Download"
"""The producer sends it with every download (``producer.download.DOWNLOAD_HEADER``): a source
redirected here would read the pipeline's own output as its list, so it is refused (421)."""
SERVED_BY_HEADER = "X-Isin-Pipeline-Served-By"
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/metrics"})
MAX_PAGE = 1000


def ident(url: URL) -> tuple[str, int]:
    return (url.host or "", int(url.port or 80))


class ApiView(View):
    """Checks the optional bearer token (in constant time) and records metrics for every route."""

    route = ""

    @property
    def ctx(self) -> StreamContext:
        return stream_context(self.app)

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        response = await self._dispatch(request)
        metrics = self.ctx.metrics
        metrics.query_latency.labels(self.route).observe(time.perf_counter() - started)
        metrics.queries.labels(self.route, str(getattr(response, "status", 0))).inc()
        return response

    async def _dispatch(self, request: Any) -> Any:
        if request.headers.get(DOWNLOAD_HEADER):
            return self.error(421, "this is the isin-pipeline HTTP API, not a list: a source must not read it")
        if self.app.should_stop and request.path not in PUBLIC_PATHS:  # its HTTP client may be closed already
            return self.error(503, "this worker is stopping; retry")
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

    # -- the cluster, through Faust's public assignor and router ---------------------------

    def local_partitions(self) -> list[int]:
        """Table partitions this worker serves as the active owner."""
        actives = self.app.assignor.assigned_actives()
        return sorted(tp.partition for tp in actives if tp.topic == self.ctx.settings.topic_current)

    def peers(self) -> list[URL]:
        """Other workers' web URLs, from the assignor's table metadata."""
        me = ident(URL(str(self.app.conf.canonical_url)))
        hosts = self.app.router.table_metadata(self.ctx.table.name)
        return [URL(str(h)) for h in hosts if ident(URL(str(h))) != me]

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
        return table_ready(self.app)
