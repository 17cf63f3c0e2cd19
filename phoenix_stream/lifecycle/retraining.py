"""Retraining: a new version from recent labelled predictions, registered and shadowed.

A ``RetrainRequest`` (on the ``retrain`` topic, keyed by model; from the drift detector,
``POST /v1/models/{model}/retrain`` or ``phoenix-stream retrain``) asks for one job.
``RetrainJob.run`` then, one job at a time per model:

1. refuses a model not in the registry (no metric series for it), skips a request whose
   ``trigger_id`` was seen recently or already produced a registered version (its
   manifest records the trigger): one job per trigger; and ends ``rate_limited`` when
   the model trained less than ``min_interval_s`` ago (``PHOENIX_RETRAIN_MIN_INTERVAL_S``),
   or ``refused`` when its challenger was deployed by a person (``challenger_by``) and
   the request does not say ``replace_challenger`` (only the admin endpoint sets it);
2. reads the labelled predictions received since ``data_since`` when the request sets
   it (a drift alarm sets the end of the window that raised it: the world before it is
   the one that drifted away), waiting up to ``wait_s`` for ``min_rows`` of them to get
   their labels; else those of the last ``window_s`` seconds. At least ``min_rows``
   (fewer: the outcome ``too_little_data``, and the trigger may ask again), the newest
   ``max_rows`` at most, features in the champion's manifest order;
3. trains gradient boosting off the event loop into a temporary folder (ONNX, manifest,
   a new reference sample from the training rows) and records in the manifest's
   ``training`` why the version exists (reason, trigger, report, data range);
4. registers it as the next numeric version (validated by ``register_version``);
5. deploys it as the champion's shadow challenger with the evidence; the rollout
   controller then ramps it, promotes or rolls it back.

Every step is logged; every job is counted in ``phoenix_retrain_jobs_total`` by outcome.
The request itself, its checks and its signature are ``lifecycle.retrain_request``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from phoenix_stream import metrics
from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.lifecycle.deployment_record import DeploymentRecord
from phoenix_stream.lifecycle.retrain_outcome import OUTCOMES, JobEnded, Outcome, RetrainOutcome
from phoenix_stream.lifecycle.retrain_request import MAX_TEXT, RetrainRequest
from phoenix_stream.lifecycle.retrain_versions import (
    clock_time,
    manifest_of,
    next_version,
    train_and_register,
    version_of_trigger,
)
from phoenix_stream.lifecycle.training_rows import TrainingRows
from phoenix_stream.messages.validation import shorten
from phoenix_stream.serving.manifest import Manifest
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import Settings
from phoenix_stream.training.trainer import Trainer, TrainSpec, train_gradient_boosting

__all__ = [
    "ACTOR",
    "OUTCOMES",
    "Outcome",
    "RetrainJob",
    "RetrainOutcome",
    "RetrainRules",
    "TrainSpec",
    "train_gradient_boosting",
]

log = logging.getLogger(__name__)

ACTOR = "retrain"  # who the deployments of retrained versions are decided by
RECENT_TRIGGERS = 1000  # trigger ids remembered per job object, for dedup
# Who deploys challengers without being a person: their challengers a retraining replaces.
MACHINE_ACTORS = frozenset({"", ACTOR})


@dataclass(frozen=True, slots=True)
class RetrainRules:
    """The data: last ``window_s`` seconds (or since the request's ``data_since``, waiting
    up to ``wait_s`` and looking again every ``poll_s``), ``min_rows`` to ``max_rows``;
    at most one training per model every ``min_interval_s`` seconds (0: no limit)."""

    window_s: float = 600.0
    min_rows: int = 2000
    max_rows: int = 50_000
    wait_s: float = 240.0
    poll_s: float = 5.0
    min_interval_s: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrainRules:
        """PHOENIX_RETRAIN_WINDOW_S, _MIN_ROWS, _MAX_ROWS, _WAIT_S and _MIN_INTERVAL_S."""
        return cls(
            settings.retrain_window_s,
            settings.retrain_min_rows,
            settings.retrain_max_rows,
            settings.retrain_wait_s,
            min_interval_s=settings.retrain_min_interval_s,
        )


class RowSource(Protocol):
    """Labelled rows (``storage.training_data.TrainingData``)."""

    async def fetch(
        self, model: str, feature_names: Sequence[str], *, since: float, until: float, limit: int
    ) -> TrainingRows: ...


class Deployer(Protocol):
    """Deploys a decision (``lifecycle.publisher.DeploymentPublisher``)."""

    async def deploy(
        self, model: str, change: Mapping[str, Any], *, actor: str
    ) -> DeploymentRecord: ...


class RetrainJob:
    """Runs retrain requests: one at a time per model, once per trigger."""

    def __init__(
        self,
        rows: RowSource,
        deployment_of: Callable[[str], Deployment | None],
        deployer: Deployer,
        models_dir: Path,
        rules: RetrainRules = RetrainRules(),
        *,
        trainer: Trainer = train_gradient_boosting,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        challenger_by: Callable[[str], str] = lambda model: "",
    ) -> None:
        self._rows = rows
        self._challenger_by = challenger_by
        self._deployment_of = deployment_of
        self._deployer = deployer
        self._registry = ModelRegistry(models_dir)  # listing only; nothing is loaded
        self.rules = rules
        self._trainer = trainer
        self._clock = clock
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = {}
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._trained_at: dict[str, float] = {}  # model -> when its last training began

    async def run(self, request: RetrainRequest) -> RetrainOutcome:
        """Retrain ``request.model`` and deploy the result as a shadow; never raises for
        an expected failure (it is the outcome), only for a bug."""
        started = time.monotonic()
        model, trigger = request.model, request.trigger_id
        key = None if trigger is None else (model, trigger)
        if not self._registry.versions(model):
            # Checked first: a name that is not registered grows no lock, no remembered
            # trigger and no metric series (anyone's names would).
            log.warning("retrain %s: failed: no such model in the registry", shorten(model))
            return RetrainOutcome(model, "failed", f"no model {model!r} in the registry", trigger)
        if key is not None and key in self._recent:
            return self._finish(
                RetrainOutcome(model, "duplicate", "trigger seen recently", trigger), None
            )
        if key is not None:
            self._remember(key)
        lock = self._locks.setdefault(model, asyncio.Lock())
        log.info(
            "retrain %s requested by %s (trigger %s): %s",
            model, request.actor, trigger, shorten(request.reason, 200),
        )  # fmt: skip
        try:
            async with lock:
                outcome = await self._run_locked(request)
        except JobEnded as failed:
            outcome = RetrainOutcome(model, failed.outcome, failed.reason, trigger, **failed.facts)
        except (PhoenixError, ValueError) as exc:  # outages, refusals, bad data
            outcome = RetrainOutcome(model, "failed", f"{type(exc).__name__}: {exc}", trigger)
        except Exception:
            metrics.RETRAIN_JOBS.labels(model=model, outcome="failed").inc()
            raise
        if outcome.outcome == "duplicate":
            return self._finish(outcome, None)
        if key is not None and outcome.outcome in ("too_little_data", "rate_limited"):
            # Not a job yet: the same trigger may ask again once more labels have come in.
            self._recent.pop(key, None)
        return self._finish(outcome, started)

    def _remember(self, key: tuple[str, str]) -> None:
        self._recent[key] = None
        while len(self._recent) > RECENT_TRIGGERS:
            self._recent.popitem(last=False)

    def _finish(self, outcome: RetrainOutcome, started: float | None) -> RetrainOutcome:
        if started is not None:
            seconds = time.monotonic() - started
            metrics.RETRAIN_DURATION.observe(seconds)
            outcome = dataclasses.replace(outcome, seconds=seconds)
        metrics.RETRAIN_JOBS.labels(model=outcome.model, outcome=outcome.outcome).inc()
        level = logging.INFO if outcome.outcome in ("deployed", "duplicate") else logging.WARNING
        log.log(level, "retrain %s: %s: %s", outcome.model, outcome.outcome, outcome.reason)
        return outcome

    async def _run_locked(self, request: RetrainRequest) -> RetrainOutcome:
        deployment = await self._may_train(request)
        champion = await asyncio.to_thread(
            manifest_of, self._registry, request.model, deployment.champion
        )
        since, until, rows = await self._enough_rows(request, champion, deployment)
        self._trained_at[request.model] = self._clock()
        manifest = await asyncio.to_thread(
            train_and_register, self._registry, self._trainer, request, champion, rows, since, until
        )
        return await self._deploy_shadow(request, manifest, deployment, rows, since)

    async def _may_train(self, request: RetrainRequest) -> Deployment:
        """The deployment to retrain, or JobEnded: a duplicate trigger, no champion, a
        person's challenger, or too soon after the last training."""
        model, trigger = request.model, request.trigger_id
        if trigger is not None:
            done = await asyncio.to_thread(version_of_trigger, self._registry, model, trigger)
            if done is not None:
                raise JobEnded(
                    "duplicate", f"trigger already produced version {done}", version=done
                )
        deployment = self._deployment_of(model)
        if deployment is None:
            raise JobEnded("failed", f"{model} has no champion to retrain")
        self._keep_chosen_challenger(request, deployment)
        last = self._trained_at.get(model)
        if last is not None and self._clock() - last < self.rules.min_interval_s:
            raise JobEnded(
                "rate_limited",
                f"{model} began training {self._clock() - last:.0f} s ago; at most one "
                f"training every {self.rules.min_interval_s:.0f} s "
                "(PHOENIX_RETRAIN_MIN_INTERVAL_S)",
            )
        return deployment

    async def _enough_rows(
        self, request: RetrainRequest, champion: Manifest, deployment: Deployment
    ) -> tuple[float, float, TrainingRows]:
        """The labelled rows to train on, or JobEnded("too_little_data")."""
        since, until, rows = await self._labelled_rows(request, champion.feature_names)
        n = len(rows.y)
        sources = list(rows.label_sources)
        log.info(
            "retrain %s: %d labelled rows received %s (labels from %s)",
            request.model, n, self._window_words(request, since), "+".join(sources),
        )  # fmt: skip
        if n < self.rules.min_rows:
            raise JobEnded(
                "too_little_data",
                f"{n} labelled rows received {self._window_words(request, since)}, at least "
                f"{self.rules.min_rows} needed (PHOENIX_RETRAIN_MIN_ROWS); labels from "
                f"{'+'.join(sources)} count",
                champion=deployment.champion,
                rows=n,
                label_sources=sources,
                first_at=rows.first_at,
                last_at=rows.last_at,
            )
        return since, until, rows

    def _window_words(self, request: RetrainRequest, since: float) -> str:
        if request.data_since is None:
            return f"in the last {self.rules.window_s:.0f} s"
        return f"since {clock_time(since)}"

    async def _deploy_shadow(
        self,
        request: RetrainRequest,
        manifest: Manifest,
        deployment: Deployment,
        rows: TrainingRows,
        since: float,
    ) -> RetrainOutcome:
        """Deploy the registered version as the champion's shadow, with the evidence."""
        model, version = request.model, manifest.version
        current = self._deployment_of(model) or deployment
        try:  # a person may have deployed a challenger while this one trained
            self._keep_chosen_challenger(request, current)
        except JobEnded as kept:
            reason = f"version {version} registered, not deployed: {kept}"
            raise JobEnded("refused", reason) from None
        if current.challenger is not None:
            log.warning(
                "retrain %s: version %s replaces challenger %s (%s)",
                model, version, current.challenger, current.strategy,
            )  # fmt: skip
        facts: dict[str, Any] = {
            "version": version,
            "champion": current.champion,
            "rows": len(rows.y),
            "first_at": rows.first_at,
            "last_at": rows.last_at,
            "label_sources": list(rows.label_sources),
        }
        try:
            record = await self._deployer.deploy(
                model,
                {
                    "champion": current.champion,
                    "challenger": version,
                    "strategy": "shadow",
                    "reason": f"retrained: {request.reason}"[:MAX_TEXT],
                    "evidence": _evidence(request, manifest, rows, since),
                },
                actor=ACTOR,
            )
        except PhoenixError as exc:
            raise JobEnded(
                "failed", f"version {version} registered, but not deployed: {exc}", **facts
            ) from exc
        return RetrainOutcome(
            model,
            "deployed",
            f"version {version} deployed as shadow of {current.champion}",
            request.trigger_id,
            seconds=0.0,
            generation=record.generation,
            **facts,
        )

    def _keep_chosen_challenger(self, request: RetrainRequest, current: Deployment) -> None:
        """JobEnded("refused") when a person's challenger would be replaced unasked."""
        if current.challenger is None or request.replace_challenger:
            return
        by = self._challenger_by(request.model)
        if by not in MACHINE_ACTORS:
            raise JobEnded(
                "refused",
                f"challenger {current.challenger} was deployed by {shorten(by, 100)}; "
                "the request does not say replace_challenger",
                champion=current.champion,
            )

    async def _labelled_rows(
        self, request: RetrainRequest, feature_names: Sequence[str]
    ) -> tuple[float, float, TrainingRows]:
        """The window's rows; for a ``data_since``, once ``min_rows`` have their labels or
        ``wait_s`` has passed (looking again every ``poll_s``)."""
        rules = self.rules
        started = self._clock()
        while True:
            until = self._clock()
            since = until - rules.window_s if request.data_since is None else request.data_since
            rows = await self._rows.fetch(
                request.model, feature_names, since=since, until=until, limit=rules.max_rows
            )
            waited = until - started
            if (
                request.data_since is None
                or len(rows.y) >= rules.min_rows
                or waited >= rules.wait_s
            ):
                return since, until, rows
            log.info(
                "retrain %s: %d of %d labelled rows since %s; waiting for labels (%.0f of %.0f s)",
                request.model, len(rows.y), rules.min_rows, clock_time(since), waited,
                rules.wait_s,
            )  # fmt: skip
            await self._sleep(min(rules.poll_s, rules.wait_s - waited))

    def next_version(self, model: str) -> str:
        """One more than the highest numeric version of ``model`` ("1" for none)."""
        return next_version(self._registry, model)


def _evidence(
    request: RetrainRequest, manifest: Manifest, rows: TrainingRows, since: float
) -> dict[str, Any]:
    """What the shadow deployment of a retrained version records as its evidence."""
    return {
        "trigger_id": request.trigger_id,
        "report": None if request.report is None else dict(request.report),
        "data": {
            "rows": len(rows.y),
            "first_at": rows.first_at,
            "last_at": rows.last_at,
            "since": since,
            "label_sources": list(rows.label_sources),
        },
        "offline": {k: manifest.metrics[k] for k in ("roc_auc", "accuracy", "log_loss")},
        "requested_by": request.actor,
    }
