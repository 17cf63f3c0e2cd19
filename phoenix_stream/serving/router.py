"""Routing: which model version serves a request, and which one shadows it.

Routing is a pure function of (model, entity_id) and the deployment, so an entity is
sticky and every worker, and the HTTP view, decides the same. The bucket is CRC-32 of
``"<model>\\x00<entity_id>"`` scaled to [0, 1): stable across processes and machines
(Python's ``hash()`` is salted per process) and cheap enough for the hot path (~0.2 us).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from phoenix_stream.settings import Settings, Strategy

CHAMPION = "champion"
CHALLENGER = "challenger"
_BUCKETS = 2**32


@dataclass(frozen=True, slots=True)
class Deployment:
    """Who serves a deployment name: champion, optional challenger, strategy and share."""

    model: str
    champion: str  # version
    challenger: str | None = None  # version, None when there is none
    strategy: Strategy = "single"
    challenger_share: float = 0.0  # fraction of entities (ab, canary) in [0, 1]

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployment:
        """The static deployment of the default model described by settings."""
        challenger = settings.challenger_version or None
        strategy: Strategy = settings.strategy if challenger else "single"
        return cls(
            settings.default_model,
            settings.champion_version,
            challenger,
            strategy,
            settings.challenger_share,
        )


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one request: who serves it and who, if anyone, shadows it."""

    variant: str  # champion | challenger
    version: str
    shadow_version: str | None = None  # scored too, answer not served


def bucket(model: str, entity_id: str) -> float:
    """Deterministic position of an entity in [0, 1) for a model."""
    return zlib.crc32(f"{model}\x00{entity_id}".encode()) / _BUCKETS


@functools.lru_cache(maxsize=64)
def _routes(deployment: Deployment) -> tuple[Route, Route | None]:
    """The champion route (with its shadow, if any) and the challenger route."""
    challenger = deployment.challenger
    if challenger is None or deployment.strategy == "single":
        return Route(CHAMPION, deployment.champion), None
    if deployment.strategy == "shadow":
        return Route(CHAMPION, deployment.champion, shadow_version=challenger), None
    return Route(CHAMPION, deployment.champion), Route(CHALLENGER, challenger)


def route(deployment: Deployment, entity_id: str) -> Route:
    """Pick the variant for ``entity_id`` under ``deployment``."""
    champion, challenger = _routes(deployment)
    # ab and canary split by share; canary differs in how the share is chosen
    # (small, raised on evidence), not in how a request is routed.
    if challenger is not None and bucket(deployment.model, entity_id) < (
        deployment.challenger_share
    ):
        return challenger
    return champion
