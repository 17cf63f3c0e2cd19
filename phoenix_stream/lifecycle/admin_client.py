"""The CLI's way to decide deployments: the worker's admin API, with the bearer token.

``phoenix-stream deploy``, ``promote`` and ``rollback`` send their request to a running
worker (``PHOENIX_ADMIN_URL``, default this machine's ``PHOENIX_WEB_HOST:PORT``), so every
decision takes the one write path (validation, generation, audit trail) of the workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.settings import Settings

TIMEOUT_S = 30.0


class AdminError(PhoenixError):
    """The admin API refused a decision or could not be reached; the message says why."""


def admin_url(settings: Settings) -> str:
    """Base URL of the worker that takes the CLI's decisions."""
    return (settings.admin_url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


async def call(
    settings: Settings, method: str, path: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Send one admin request; the JSON answer, or AdminError with the worker's reason."""
    if not settings.admin_token:
        raise AdminError("PHOENIX_ADMIN_TOKEN is not set (the workers' admin endpoints need it)")
    url = admin_url(settings) + path
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session,
            session.request(
                method, url, data=orjson.dumps(dict(body or {})), headers=headers
            ) as response,
        ):
            raw = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AdminError(f"cannot reach the worker at {url}: {exc!r}") from exc
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AdminError(f"{url} answered {status} with no JSON") from exc
    if status >= 400 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else answer
        field = answer.get("field") if isinstance(answer, dict) else None
        where = f" ({field})" if field else ""
        raise AdminError(f"{status}: {error}{where}")
    return answer


Roles = dict[str, dict[str, str]]  # model -> version -> "champion" | "challenger (canary)"


def roles_served(answer: Mapping[str, Any]) -> Roles:
    """Each model's versions and their roles, from a ``GET /v1/deployments`` answer."""
    roles: Roles = {}
    entries = answer.get("deployments")
    for entry in entries if isinstance(entries, list) else []:
        serving = entry.get("serving") if isinstance(entry, Mapping) else None
        if not isinstance(serving, Mapping) or not isinstance(serving.get("model"), str):
            continue
        versions = roles.setdefault(serving["model"], {})
        if isinstance(serving.get("champion"), str):
            versions[serving["champion"]] = "champion"
        if isinstance(serving.get("challenger"), str):
            versions[serving["challenger"]] = f"challenger ({serving.get('strategy')})"
    return roles


async def served_roles(settings: Settings, timeout_s: float = 2.0) -> Roles | None:
    """What the worker at :func:`admin_url` serves (open endpoint), or None if none answers."""
    url = admin_url(settings) + "/v1/deployments"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return None
            answer = orjson.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return None
    return roles_served(answer) if isinstance(answer, dict) else None
