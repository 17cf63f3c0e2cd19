"""Routing: which model version serves a request, and which one shadows it.

Routing is a pure function of (model, entity_id) and the deployment, so an entity is
sticky and every worker, and the HTTP view, decides the same. The bucket is the first
8 bytes of BLAKE2b of ``"<model>\\x00<entity_id>"`` scaled to [0, 1): stable across
processes and machines (Python's ``hash()`` is salted per process), and uniform also for
sequential ids. CRC-32 (0.13 us) was tried first: being linear, it put 26.8 % of the
entities "user-0".."user-2999" below a 30 % share, far outside a binomial's 0.8 %;
BLAKE2b costs 0.65 us a request and is within noise on every pattern tried.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from phoenix_stream.settings import Settings, Strategy

CHAMPION = "champion"
CHALLENGER = "challenger"
_BUCKETS = 2**64


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
    digest = hashlib.blake2b(f"{model}\x00{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _BUCKETS


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
