"""``GET /v1/models/{model}/evaluation``: online metrics per version and variant.

Computed on request from PostgreSQL, where feedback is joined to served and shadow
predictions by request_id (see :mod:`phoenix_stream.storage.feedback`), over the latest
``PHOENIX_EVALUATION_WINDOW`` labelled predictions of each (version, variant). The
``phoenix_model_*`` gauges are set from the same numbers. 404 for an unknown model, 503
when PostgreSQL cannot answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream.exceptions import SinkError
from phoenix_stream.lifecycle import evaluation
from phoenix_stream.messages.validation import shorten
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_error, json_errors, json_response

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


class _Evaluation:
    """The view's work, behind ``json_errors`` (which passes no URL parameters)."""

    def __init__(self, app: PhoenixApp) -> None:
        self.app = app

    @json_errors
    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        model = request.match_info.get("model", "")
        app, settings = self.app, self.app.settings
        if model not in app.runtime.deployments.names():
            return json_error(404, f"unknown model {shorten(model)!r}", "model")
        try:
            results = await app.runtime.evaluations.evaluate(model, settings.evaluation_window)
        except SinkError as exc:
            return json_error(
                503, f"PostgreSQL cannot answer: {shorten(str(exc), 200)}", kind="database"
            )
        evaluation.publish(model, results)
        return json_response(
            {
                "model": model,
                "window": settings.evaluation_window,
                "label_sources": app.runtime.evaluations.sources.names,
                "variants": [r.as_dict() for r in results],
            }
        )


class EvaluationView(web.View):
    """Accuracy, log loss, Brier, AUC and positive rate per (version, variant)."""

    async def get(self, request: aiohttp_web.Request, model: str) -> aiohttp_web.Response:
        """200 ``{"model", "window" (labelled rows per group), "variants": [...]}``."""
        return await _Evaluation(phoenix_app(self)).get(request)


def register(app: PhoenixApp) -> None:
    """``GET /v1/models/{model}/evaluation``."""
    app.page("/v1/models/{model}/evaluation")(EvaluationView)
