"""``GET /v1/drift/{model}``: a model's latest drift reports, newest window first.

Read from PostgreSQL (table ``drift_reports``), across the model's versions: ``?limit=``
windows (default 20, at most 1,000). Open, like the other read endpoints. 404 for a model
not in the registry, 422 for a bad ``limit``, 503 when PostgreSQL cannot answer.
``windows_held`` (a diagnostic) counts, per ``model/version``, the windows this worker's
partitions of the ``drift-windows`` table hold: it stays small if windows expire.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream.exceptions import SinkError, ValidationError
from phoenix_stream.messages.validation import shorten
from phoenix_stream.storage.drift import DriftStore
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_error, json_errors, json_response

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp

DEFAULT_LIMIT = 20  # windows
MAX_LIMIT = 1_000  # windows: one answer stays small whatever a client asks


def parse_limit(raw: str | None) -> int:
    """The ``limit`` query parameter: an integer in 1..MAX_LIMIT; ValidationError if not."""
    if raw is None:
        return DEFAULT_LIMIT
    # ASCII whitespace only, as int() takes it: str.strip() also drops "\x1c".."\x1f".
    text = raw.strip(" \t\n\r\x0b\x0c")
    # isdecimal() first: int() would also take "1_000", "+5" and non-ASCII digits.
    if not (text.isascii() and text.isdecimal()) or len(text) > 6:
        raise ValidationError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise ValidationError("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return value


def windows_held(data: Any, model: str) -> dict[str, int]:
    """Windows per ``model/version`` key of ``model`` in a windowed table's local store.

    ``data`` maps ``(key, (start, end))`` to a value; other keys are skipped.
    """
    prefix = f"{model}/"
    held: Counter[str] = Counter()
    # list(): a snapshot, whatever the store's own iteration does; no await in between.
    for key in list(data.keys()):
        if isinstance(key, tuple) and key and isinstance(key[0], str):
            if key[0].startswith(prefix):
                held[key[0]] += 1
    return dict(held)


class DriftView(web.View):
    """The latest drift windows of one model: per feature KS D, p-value, drifted."""

    @json_errors
    async def get(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """200 ``{"model", "limit", "reports": [...]}``, newest window first."""
        app = phoenix_app(self)
        if model not in app.runtime.deployments.names():
            return json_error(404, f"no model {shorten(model)!r}", "model")
        try:
            limit = parse_limit(request.query.get("limit"))
        except ValidationError as exc:
            return json_error(422, exc.message, exc.field)
        try:
            stored = await DriftStore(app.runtime.database).recent(model, limit)
        except SinkError as exc:
            return json_error(
                503, f"PostgreSQL cannot answer: {shorten(str(exc), 200)}", kind="database"
            )
        table: Any = app.tables.get("drift-windows")  # absent when the drift agent is off
        held = {} if table is None else windows_held(table.data, model)
        answer: dict[str, Any] = {
            "model": model,
            "limit": limit,
            "reports": [s.as_dict() for s in stored],
            "windows_held": held,
        }
        if "drift" not in app.settings.agents:
            answer["warning"] = (
                "this worker does not run the drift agents (PHOENIX_AGENTS): reports come "
                "only from workers that run them"
            )
        return json_response(answer)


def register(app: PhoenixApp) -> None:
    """``GET /v1/drift/{model}``."""
    app.page("/v1/drift/{model}")(DriftView)
