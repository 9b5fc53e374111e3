"""``${NAME}`` in a sources file: secrets and hosts taken from the environment, never written in it.

``resolve_env`` replaces each reference in a source's URL, credentials and header values. A value
that lands in a URL's user info is percent-encoded (a password with ``@ / # :`` must not move the
URL to another host), one that lands in its host must be a host name. ``literal_secrets`` lists
the secrets written in the file itself instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
PLAIN_HEADERS = frozenset({"accept", "accept-language", "cache-control", "from", "referer", "user-agent"})
"""Header values that are no secret and may be written in the file."""
_FROM_ENV = ("url", "username", "password", "bearer_token")
_HOST_VALUE = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_SECRETS = ("password", "bearer_token")


def literal_secrets(where: str, raw: dict[str, Any]) -> list[str]:
    """Secrets written in the file instead of taken from the environment."""
    hint = 'a literal secret: put it in an environment variable and write "${NAME}"'
    found = [f"{where}.{k}: {hint}" for k in _SECRETS if isinstance(raw.get(k), str) and not ENV_REF.search(raw[k])]
    headers = raw.get("headers")
    if isinstance(headers, dict):
        found += [
            f"{where}.headers.{h}: {hint}"
            for h, v in headers.items()
            if isinstance(v, str) and h.lower() not in PLAIN_HEADERS and not ENV_REF.search(v)
        ]
    url = raw.get("url")
    if isinstance(url, str):
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password and not ENV_REF.search(password):
            found.append(f"{where}.url: a password in the URL is {hint}")
    return found


def resolve_env(where: str, raw: dict[str, Any], env: Mapping[str, str], errors: list[str]) -> dict[str, Any]:
    """``${NAME}`` in the URL, credentials and header values, replaced from the environment."""

    def resolve(key: str, value: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if not env.get(name):
                errors.append(f"{where}.{key}: environment variable {name} is not set")
                return ""
            part = _url_part(value, match.start()) if key == "url" else None
            if part == "userinfo":  # a password with @ / # : must not move the URL's host
                return quote(env[name], safe="%!$&'()*+,;=")
            if part == "host" and not _HOST_VALUE.match(env[name]):
                errors.append(f"{where}.{key}: environment variable {name} does not hold a host name")
                return ""
            return env[name]

        return ENV_REF.sub(one, value)

    out = dict(raw)
    for key in _FROM_ENV:
        if isinstance(out.get(key), str):
            out[key] = resolve(key, out[key])
    if isinstance(out.get("headers"), dict):
        out["headers"] = {h: resolve(f"headers.{h}", v) if isinstance(v, str) else v for h, v in out["headers"].items()}
    return out


def _url_part(template: str, at: int) -> str:
    """The part of a URL the character at ``at`` is in: ``userinfo``, ``host`` (and port) or ``rest``."""
    begin = template.find("://") + 3
    if begin < 3 or at < begin:
        return "rest"
    end = min((i for i in (template.find(c, begin) for c in "/?#") if i >= 0), default=len(template))
    if at >= end:
        return "rest"
    return "userinfo" if at < template.rfind("@", begin, end) else "host"
