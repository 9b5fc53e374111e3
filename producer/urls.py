"""Where a download may go: origins, URLs safe to print, and the redirects that are refused.

A redirect is followed by hand (``next_hop``), at most ``MAX_REDIRECTS`` times, never in a loop,
never to another scheme than http(s), to a link-local or cloud-metadata address, or from a public
host to a loopback or private one; credentials and headers go only to the origin they were
configured for (``origin``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from core.errors import SourceError

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
DOWNLOAD_HEADER = "X-Isin-Pipeline-Download"
"""Sent with every download: the stream workers' HTTP API refuses a request that carries it (421),
so a source redirected to the pipeline's own API fails instead of reading its output as a list."""
_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and as a source name."""
    parts = urlsplit(url)
    port = _port(parts)
    host = f"{parts.hostname or ''}:{port}" if port else parts.hostname or ""
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), _port(parts) or {"http": 80, "https": 443}.get(scheme)


def _host_kind(host: str) -> str:
    """``link-local`` (cloud metadata), ``internal`` (loopback, private) or ``public``: literal addresses
    in any form a resolver takes (``2852039166``, ``::ffff:169.254.169.254``); names are not resolved."""
    host = host.lower().strip("[]").rstrip(".")
    if host in _METADATA_HOSTS:
        return "link-local"
    if host == "localhost" or host.endswith(".localhost"):
        return "internal"
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return "public"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return "link-local"
    return "public" if ip.is_global else "internal"


def redirect_refusal(start: str, target: str) -> str | None:
    """Why a download of ``start`` must not follow a redirect to ``target``; None if it may."""
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        return f"a redirect to a {scheme}: URL (only http and https redirects are followed)"
    before, after = _host_kind(origin(start)[1]), _host_kind(origin(target)[1])
    if after == "link-local" and before != "link-local":
        return "a redirect to a link-local address, where cloud metadata services answer"
    if after == "internal" and before == "public":
        return "a redirect from a public host to a loopback or private address"
    return None


def next_hop(at: httpx.URL, location: str, seen: list[str], safe: str) -> str:
    """Where a redirect leads, appended to ``seen``; SourceError if it must not be followed."""
    target = str(at.join(location))  # httpx refused an invalid Location already
    refusal = redirect_refusal(seen[0], target)
    if refusal:
        raise SourceError(f"{safe}: refused {refusal}: {redact_url(target)}")
    if target in seen:
        raise SourceError(f"{safe}: a redirect loop: {' -> '.join(redact_url(u) for u in [*seen, target])}")
    if len(seen) > MAX_REDIRECTS:
        raise SourceError(f"{safe}: more than {MAX_REDIRECTS} redirects")
    if origin(target) != origin(seen[0]):
        logger.info(
            "%s redirects to %s, another origin: its credentials and headers are not sent there",
            redact_url(str(at)),
            redact_url(target),
        )
    seen.append(target)
    return target
