"""``GET /v1/models``: the models that can be served, their deployment and versions.

Only manifests are read (no ONNX session is built for a listing), in a thread: the
event loop also serves predictions.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web as aiohttp_web
from faust import web

from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.serving.manifest import MANIFEST_FILE, Manifest
from phoenix_stream.web.context import phoenix_app
from phoenix_stream.web.responses import json_response

if TYPE_CHECKING:
    from phoenix_stream.app import PhoenixApp


def describe_models(app: PhoenixApp) -> list[dict[str, Any]]:
    """Each model: deployment (champion, challenger, strategy, share) and its versions."""
    runtime = app.runtime
    out: list[dict[str, Any]] = []
    for name in runtime.deployments.names():
        deployment = runtime.deployments.get(name)
        versions: list[dict[str, Any]] = []
        for version in runtime.registry.versions(name):
            try:
                manifest = Manifest.from_file(
                    runtime.registry.models_dir / name / version / MANIFEST_FILE
                )
            except ModelLoadError as exc:
                versions.append({"version": version, "error": str(exc)})
                continue
            versions.append(
                {
                    "version": version,
                    "algorithm": manifest.algorithm,
                    "features": list(manifest.feature_names),
                    "threshold": manifest.output.threshold,
                    "metrics": dict(manifest.metrics),
                    "created_at": manifest.created_at,
                }
            )
        out.append(
            {
                "name": name,
                "champion": deployment.champion if deployment else None,
                "challenger": deployment.challenger if deployment else None,
                "strategy": deployment.strategy if deployment else None,
                "challenger_share": deployment.challenger_share if deployment else None,
                "versions": versions,
            }
        )
    return out


class ModelsView(web.View):
    """List the servable models."""

    async def get(self, request: aiohttp_web.Request) -> aiohttp_web.Response:
        """200 with ``{"models": [...]}``."""
        return json_response(
            {"models": await asyncio.to_thread(describe_models, phoenix_app(self))}
        )


def register(app: PhoenixApp) -> None:
    """``GET /v1/models``."""
    app.page("/v1/models")(ModelsView)
