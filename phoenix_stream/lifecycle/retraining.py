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
import hashlib
import json
import logging
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import orjson

from phoenix_stream import metrics
from phoenix_stream.exceptions import PhoenixError
from phoenix_stream.lifecycle.deployments import DeploymentRecord
from phoenix_stream.lifecycle.retrain_request import MAX_TEXT, RetrainRequest
from phoenix_stream.messages.validation import shorten
from phoenix_stream.serving.registration import RegistrationError, register_version
from phoenix_stream.serving.registry import MANIFEST_FILE, Manifest, ModelRegistry
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import Settings
from phoenix_stream.storage.training_data import TrainingRows

__all__ = [
    "ACTOR",
    "Outcome",
    "RetrainJob",
    "RetrainOutcome",
    "RetrainRules",
    "TrainSpec",
]

log = logging.getLogger(__name__)

ACTOR = "retrain"  # who the deployments of retrained versions are decided by
KIND: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"
RECENT_TRIGGERS = 1000  # trigger ids remembered per job object, for dedup
_REGISTER_ATTEMPTS = 3  # next version numbers tried when another registration took one

Outcome = Literal["deployed", "duplicate", "too_little_data", "failed", "rate_limited", "refused"]
OUTCOMES: tuple[Outcome, ...] = (
    "deployed",
    "duplicate",
    "too_little_data",
    "failed",
    "rate_limited",
    "refused",
)
# Who deploys challengers without being a person: their challengers a retraining replaces.
MACHINE_ACTORS = frozenset({"", ACTOR})


# ------------------------------------------------------------------------------- the job


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


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    """What one job did; times in epoch seconds, ``seconds`` its duration."""

    model: str
    outcome: Outcome
    reason: str  # why, in words: the failure, the duplicate, or what was deployed
    trigger_id: str | None = None
    version: str | None = None  # the version registered (or that a duplicate produced)
    champion: str | None = None
    rows: int = 0
    first_at: float | None = None
    last_at: float | None = None
    seconds: float = 0.0
    generation: int | None = None  # of the shadow deployment
    # The label sources whose labels the rows came from (lifecycle.label_sources).
    label_sources: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """One training run: write ``<folder>/<name>/<version>`` from X float32 (n, F), y (n,)."""

    folder: Path
    name: str
    version: str
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    profile_features: tuple[str, ...]
    threshold: float
    seed: int


Trainer = Callable[[TrainSpec], Manifest]


def train_gradient_boosting(spec: TrainSpec) -> Manifest:
    """The default trainer: ``training.train.train_version`` (gradient boosting), 1 thread.

    Blocking (seconds); run it in a thread. One OpenMP thread, so serving keeps a core.
    """
    # Imported here: scikit-learn and skl2onnx load only in a worker that trains.
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped,unused-ignore]

    from phoenix_stream.training.train import train_version

    with threadpool_limits(limits=1):
        return train_version(
            spec.folder,
            spec.name,
            spec.version,
            spec.X,
            spec.y,
            KIND,
            spec.seed,
            feature_names=spec.feature_names,
            profile_features=spec.profile_features,
            threshold=spec.threshold,
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


class _Failed(Exception):
    """Ends a job early with an outcome (internal)."""

    def __init__(self, outcome: Outcome, reason: str, **facts: Any) -> None:
        super().__init__(reason)
        self.outcome: Outcome = outcome
        self.reason = reason
        self.facts = facts


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
        except _Failed as failed:
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
            metrics.RETRAIN_SECONDS.observe(seconds)
            outcome = dataclasses.replace(outcome, seconds=seconds)
        metrics.RETRAIN_JOBS.labels(model=outcome.model, outcome=outcome.outcome).inc()
        level = logging.INFO if outcome.outcome in ("deployed", "duplicate") else logging.WARNING
        log.log(level, "retrain %s: %s: %s", outcome.model, outcome.outcome, outcome.reason)
        return outcome

    async def _run_locked(self, request: RetrainRequest) -> RetrainOutcome:
        model, trigger = request.model, request.trigger_id
        if trigger is not None:
            done = await asyncio.to_thread(self._version_of_trigger, model, trigger)
            if done is not None:
                raise _Failed("duplicate", f"trigger already produced version {done}", version=done)
        deployment = self._deployment_of(model)
        if deployment is None:
            raise _Failed("failed", f"{model} has no champion to retrain")
        self._keep_chosen_challenger(request, deployment)
        last = self._trained_at.get(model)
        if last is not None and self._clock() - last < self.rules.min_interval_s:
            raise _Failed(
                "rate_limited",
                f"{model} began training {self._clock() - last:.0f} s ago; at most one "
                f"training every {self.rules.min_interval_s:.0f} s "
                "(PHOENIX_RETRAIN_MIN_INTERVAL_S)",
            )
        champion = await asyncio.to_thread(self._manifest, model, deployment.champion)

        since, until, rows = await self._labelled_rows(request, champion.feature_names)
        n = len(rows.y)
        where = (
            f"in the last {self.rules.window_s:.0f} s"
            if request.data_since is None
            else f"since {_clock_time(since)}"
        )
        sources = list(rows.label_sources)
        log.info(
            "retrain %s: %d labelled rows received %s (labels from %s)",
            model, n, where, "+".join(sources),
        )  # fmt: skip
        data = {
            "rows": n,
            "first_at": rows.first_at,
            "last_at": rows.last_at,
            "since": since,
            "label_sources": sources,
        }
        if n < self.rules.min_rows:
            raise _Failed(
                "too_little_data",
                f"{n} labelled rows received {where}, at least "
                f"{self.rules.min_rows} needed (PHOENIX_RETRAIN_MIN_ROWS); labels from "
                f"{'+'.join(sources)} count",
                champion=deployment.champion,
                rows=n,
                label_sources=sources,
                first_at=rows.first_at,
                last_at=rows.last_at,
            )

        self._trained_at[model] = self._clock()
        manifest = await asyncio.to_thread(
            self._train_and_register, request, champion, rows, since, until
        )
        version = manifest.version
        current = self._deployment_of(model) or deployment
        try:  # a person may have deployed a challenger while this one trained
            self._keep_chosen_challenger(request, current)
        except _Failed as kept:
            reason = f"version {version} registered, not deployed: {kept}"
            raise _Failed("refused", reason) from None
        if current.challenger is not None:
            log.warning(
                "retrain %s: version %s replaces challenger %s (%s)",
                model, version, current.challenger, current.strategy,
            )  # fmt: skip
        evidence = {
            "trigger_id": trigger,
            "report": None if request.report is None else dict(request.report),
            "data": data,
            "offline": {k: manifest.metrics[k] for k in ("roc_auc", "accuracy", "log_loss")},
            "requested_by": request.actor,
        }
        facts: dict[str, Any] = {
            "version": version,
            "champion": current.champion,
            "rows": n,
            "first_at": rows.first_at,
            "last_at": rows.last_at,
            "label_sources": sources,
        }
        try:
            record = await self._deployer.deploy(
                model,
                {
                    "champion": current.champion,
                    "challenger": version,
                    "strategy": "shadow",
                    "reason": f"retrained: {request.reason}"[:MAX_TEXT],
                    "evidence": evidence,
                },
                actor=ACTOR,
            )
        except PhoenixError as exc:
            raise _Failed(
                "failed", f"version {version} registered, but not deployed: {exc}", **facts
            ) from exc
        return RetrainOutcome(
            model,
            "deployed",
            f"version {version} deployed as shadow of {current.champion}",
            trigger,
            seconds=0.0,
            generation=record.generation,
            **facts,
        )

    def _keep_chosen_challenger(self, request: RetrainRequest, current: Deployment) -> None:
        """_Failed("refused") when a person's challenger would be replaced unasked."""
        if current.challenger is None or request.replace_challenger:
            return
        by = self._challenger_by(request.model)
        if by not in MACHINE_ACTORS:
            raise _Failed(
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
                request.model, len(rows.y), rules.min_rows, _clock_time(since), waited,
                rules.wait_s,
            )  # fmt: skip
            await self._sleep(min(rules.poll_s, rules.wait_s - waited))

    # -- blocking steps, run in threads ----------------------------------------------------

    def _manifest(self, model: str, version: str) -> Manifest:
        return Manifest.from_file(self._registry.models_dir / model / version / MANIFEST_FILE)

    def _version_of_trigger(self, model: str, trigger: str) -> str | None:
        """The registered version whose manifest records ``trigger``, if any (newest first)."""
        for version in reversed(self._registry.versions(model)):
            path = self._registry.models_dir / model / version / MANIFEST_FILE
            try:
                training = json.loads(path.read_bytes()).get("training", {})
            except (OSError, ValueError, AttributeError):
                continue  # unreadable: the registry reports it elsewhere
            if isinstance(training, dict) and training.get("trigger_id") == trigger:
                return version
        return None

    def next_version(self, model: str) -> str:
        """One more than the highest numeric version of ``model`` ("1" for none)."""
        numbers = [int(v) for v in self._registry.versions(model) if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    def _train_and_register(
        self,
        request: RetrainRequest,
        champion: Manifest,
        rows: TrainingRows,
        since: float,
        until: float,
    ) -> Manifest:
        model = request.model
        version = self.next_version(model)
        with tempfile.TemporaryDirectory(prefix="phoenix-retrain-") as tmp:
            spec = TrainSpec(
                folder=Path(tmp),
                name=model,
                version=version,
                X=rows.X,
                y=rows.y,
                feature_names=champion.feature_names,
                profile_features=tuple(f.name for f in champion.features if f.source == "profile"),
                threshold=champion.output.threshold,
                seed=int(version) % 2**31,
            )
            started = time.monotonic()
            trained = self._trainer(spec)
            log.info(
                "retrain %s: trained version %s on %d rows in %.1f s (held-out auc %.4f)",
                model, version, len(rows.y), time.monotonic() - started,
                trained.metrics.get("roc_auc", float("nan")),
            )  # fmt: skip
            folder = Path(tmp) / model / version
            training = {**trained.training, **_why(request, champion.version, rows, since, until)}
            if request.trigger_id is not None:
                # Another worker may have run the same request meanwhile (a rebalance
                # during the wait for labels moves the retrain partition, not this job).
                done = self._version_of_trigger(model, request.trigger_id)
                if done is not None:
                    raise _Failed(
                        "duplicate", f"trigger produced version {done} meanwhile", version=done
                    )
            for attempt in range(_REGISTER_ATTEMPTS):
                manifest = dataclasses.replace(trained, version=version, training=training)
                manifest.write(folder / MANIFEST_FILE)
                try:
                    registered = register_version(folder, self._registry.models_dir)
                except RegistrationError:
                    taken = (self._registry.models_dir / model / version).exists()
                    if not taken or attempt == _REGISTER_ATTEMPTS - 1:
                        raise
                    log.warning("retrain %s: version %s was taken meanwhile", model, version)
                    version = self.next_version(model)
                    continue
                log.info("retrain %s: registered version %s", model, version)
                return registered
        raise AssertionError("unreachable")  # pragma: no cover


def _clock_time(epoch: float) -> str:
    """UTC time of day to the second, for logs and reasons."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _why(
    request: RetrainRequest, parent: str, rows: TrainingRows, since: float, until: float
) -> dict[str, int | float | str]:
    """What the manifest's ``training`` records about why and from what the version exists."""
    report = b"" if request.report is None else orjson.dumps(dict(request.report))
    return {
        "reason": request.reason,
        "trigger_id": request.trigger_id or "",
        "requested_by": request.actor,
        "requested_at": request.requested_at,
        "parent": parent,
        "report": report.decode(),
        "report_sha256": hashlib.sha256(report).hexdigest() if report else "",
        "data_window_since": since,
        "data_window_until": until,
        "data_rows": len(rows.y),
        "data_first_at": rows.first_at if rows.first_at is not None else 0.0,
        "data_last_at": rows.last_at if rows.last_at is not None else 0.0,
    }
