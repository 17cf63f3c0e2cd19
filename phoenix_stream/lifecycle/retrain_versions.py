"""The versions a retraining makes: train, record why, register as the next number.

Blocking (file system, training): the job runs these in threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import orjson

from phoenix_stream.lifecycle.retrain_outcome import JobEnded
from phoenix_stream.lifecycle.retrain_request import RetrainRequest
from phoenix_stream.lifecycle.training_rows import TrainingRows
from phoenix_stream.serving.manifest import MANIFEST_FILE, Manifest
from phoenix_stream.serving.registration import RegistrationError, register_version
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.training.trainer import Trainer, TrainSpec

__all__ = [
    "clock_time",
    "manifest_of",
    "next_version",
    "train_and_register",
    "version_of_trigger",
]

log = logging.getLogger(__name__)

_REGISTER_ATTEMPTS = 3  # next version numbers tried when another registration took one


def manifest_of(registry: ModelRegistry, model: str, version: str) -> Manifest:
    """The manifest of a registered version (read from disk, not loaded)."""
    return Manifest.from_file(registry.models_dir / model / version / MANIFEST_FILE)


def version_of_trigger(registry: ModelRegistry, model: str, trigger: str) -> str | None:
    """The registered version whose manifest records ``trigger``, if any (newest first)."""
    for version in reversed(registry.versions(model)):
        path = registry.models_dir / model / version / MANIFEST_FILE
        try:
            training = json.loads(path.read_bytes()).get("training", {})
        except (OSError, ValueError, AttributeError):
            continue  # unreadable: the registry reports it elsewhere
        if isinstance(training, dict) and training.get("trigger_id") == trigger:
            return version
    return None


def next_version(registry: ModelRegistry, model: str) -> str:
    """One more than the highest numeric version of ``model`` ("1" for none)."""
    numbers = [int(v) for v in registry.versions(model) if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def train_and_register(
    registry: ModelRegistry,
    trainer: Trainer,
    request: RetrainRequest,
    champion: Manifest,
    rows: TrainingRows,
    since: float,
    until: float,
) -> Manifest:
    """Train a version on ``rows``, record why in its manifest and register it as the next
    numeric version (trying the next one when another registration took it).

    Blocking (seconds): run it in a thread. ``JobEnded("duplicate")`` when another worker
    produced a version for the same trigger meanwhile.
    """
    model = request.model
    version = next_version(registry, model)
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
        trained = trainer(spec)
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
            done = version_of_trigger(registry, model, request.trigger_id)
            if done is not None:
                raise JobEnded(
                    "duplicate", f"trigger produced version {done} meanwhile", version=done
                )
        for attempt in range(_REGISTER_ATTEMPTS):
            manifest = dataclasses.replace(trained, version=version, training=training)
            manifest.write(folder / MANIFEST_FILE)
            try:
                registered = register_version(folder, registry.models_dir)
            except RegistrationError:
                taken = (registry.models_dir / model / version).exists()
                if not taken or attempt == _REGISTER_ATTEMPTS - 1:
                    raise
                log.warning("retrain %s: version %s was taken meanwhile", model, version)
                version = next_version(registry, model)
                continue
            log.info("retrain %s: registered version %s", model, version)
            return registered
    raise AssertionError("unreachable")  # pragma: no cover


def clock_time(epoch: float) -> str:
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
