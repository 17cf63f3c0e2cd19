"""ServingModels: loads off the event loop, one load per version, failures retried on a delay.

Real model versions on disk (a small trained logistic model) behind a loader that only
records which thread loaded what; failures come from really breaking a manifest.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from pathlib import Path

import pytest

from phoenix_stream import metrics
from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.serving.manifest import MANIFEST_FILE
from phoenix_stream.serving.models import ServingModels
from phoenix_stream.serving.registry import LoadedModel, ModelRegistry
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset
from phoenix_stream.training.train import train_version

NAME = "credit-risk"
RETRY_S = 30.0


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with versions 1 and 2 of a small logistic model (fast to train)."""
    models = tmp_path_factory.mktemp("models")
    X, y = make_dataset(1000, seed=5)
    for version in ("1", "2"):
        train_version(models, NAME, version, X, y, "logistic_regression", seed=5)
    return models


@pytest.fixture
def models_dir(source_dir: Path, tmp_path: Path) -> Path:
    """A private copy, so tests may break files."""
    return Path(shutil.copytree(source_dir, tmp_path / "models"))


class Clock:
    """A clock advanced by hand, seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingLoader:
    """The real registry, recording each load and its thread; ``gate`` holds loads back."""

    def __init__(self, models_dir: Path) -> None:
        self.registry = ModelRegistry(models_dir)
        self.calls: list[tuple[str, str]] = []
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None

    def load(self, name: str, version: str) -> LoadedModel:
        self.calls.append((name, version))
        self.threads.append(threading.get_ident())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10.0), "the test never released the load"
        return self.registry.load(name, version)


def _failures_counted(version: str) -> float:
    labels = {"model": NAME, "version": version}
    return metrics.REGISTRY.get_sample_value("phoenix_model_load_failures_total", labels) or 0.0


def _loaded_gauge(version: str) -> float | None:
    labels = {"model": NAME, "version": version}
    return metrics.REGISTRY.get_sample_value("phoenix_model_loaded", labels)


async def test_load_runs_in_a_thread_and_lookup_never_loads(models_dir: Path) -> None:
    loader = RecordingLoader(models_dir)
    models = ServingModels(loader, retry_s=RETRY_S, clock=Clock())
    with pytest.raises(ModelLoadError, match="not loaded yet"):
        models.lookup(NAME, "1")
    assert loader.calls == []  # the hot-path lookup never loads

    await models.prepare([(NAME, "1")])
    assert loader.calls == [(NAME, "1")]
    assert loader.threads[0] != threading.get_ident()  # not the event loop's thread
    servable = models.lookup(NAME, "1")
    manifest = servable.loaded.manifest
    assert (servable.name, servable.version) == (NAME, "1")
    assert servable.feature_names == FEATURE_NAMES
    assert servable.threshold == manifest.output.threshold
    assert servable.positive_label == manifest.output.positive_label == 1
    assert _loaded_gauge("1") == 1.0

    await models.prepare([(NAME, "1")])
    assert loader.calls == [(NAME, "1")]  # loaded versions are kept
    assert models.failures() == {}


async def test_concurrent_prepares_load_each_version_once(models_dir: Path) -> None:
    loader = RecordingLoader(models_dir)
    loader.gate = threading.Event()
    models = ServingModels(loader, retry_s=RETRY_S, clock=Clock())
    callers = [asyncio.create_task(models.prepare([(NAME, "1")])) for _ in range(3)]
    # Every caller is waiting while the one load is in its thread.
    assert await asyncio.to_thread(loader.entered.wait, 10.0)
    await asyncio.sleep(0)  # let the other callers reach their await
    assert not any(c.done() for c in callers)
    # A caller that gives up does not cancel the load the others wait for.
    callers[0].cancel()
    loader.gate.set()
    await asyncio.gather(*callers[1:])
    assert callers[0].cancelled()
    assert loader.calls == [(NAME, "1")]
    assert models.lookup(NAME, "1").version == "1"


async def test_a_failed_version_is_retried_only_after_the_delay(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = models_dir / NAME / "2" / MANIFEST_FILE
    good = manifest.read_text()
    manifest.write_text("{not json")
    loader = RecordingLoader(models_dir)
    clock = Clock()
    models = ServingModels(loader, retry_s=RETRY_S, clock=clock)
    counted = _failures_counted("2")
    keys = [(NAME, "1"), (NAME, "2")]

    with caplog.at_level(logging.ERROR, logger="phoenix_stream.serving.models"):
        await models.prepare(keys)  # never raises for a version that cannot load
        assert sorted(loader.calls) == keys
        failure = models.failures()[(NAME, "2")]
        assert "cannot read manifest" in failure.reason
        assert (failure.failed_at, failure.retry_at, failure.attempts) == (1000.0, 1030.0, 1)
        assert _failures_counted("2") == counted + 1 and _loaded_gauge("2") == 0.0
        # The good version serves while the other fails; the failure is the lookup's error.
        assert models.lookup(NAME, "1").version == "1"
        with pytest.raises(ModelLoadError, match="cannot read manifest"):
            models.lookup(NAME, "2")

        # Batches before the delay do not touch the disk again.
        clock.now += RETRY_S - 0.1
        await models.prepare(keys)
        await models.prepare(keys)
        assert len(loader.calls) == 2 and _failures_counted("2") == counted + 1

        clock.now += 0.1
        await models.prepare(keys)
        assert loader.calls[2:] == [(NAME, "2")]
        assert models.failures()[(NAME, "2")].attempts == 2
        assert _failures_counted("2") == counted + 2

    # Logged once per attempt, not once per batch.
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("version 2" in r.getMessage() for r in errors)

    manifest.write_text(good)  # repaired on disk: the next try after the delay loads it
    await models.prepare(keys)
    assert len(loader.calls) == 3
    clock.now += RETRY_S
    await models.prepare(keys)
    assert len(loader.calls) == 4
    assert models.lookup(NAME, "2").version == "2"
    assert models.failures() == {} and _loaded_gauge("2") == 1.0


class BuggyLoader:
    """A loader failing with an error nobody expected (not a ModelLoadError)."""

    def __init__(self) -> None:
        self.calls = 0

    def load(self, name: str, version: str) -> LoadedModel:
        self.calls += 1
        raise RuntimeError("disk on fire")


async def test_an_unexpected_load_error_is_remembered_like_any_failure() -> None:
    loader = BuggyLoader()
    models = ServingModels(loader, retry_s=RETRY_S, clock=Clock())
    await models.prepare([(NAME, "9")])
    await models.prepare([(NAME, "9")])
    assert loader.calls == 1
    assert models.failures()[(NAME, "9")].reason == "RuntimeError: disk on fire"
    with pytest.raises(ModelLoadError, match="disk on fire"):
        models.lookup(NAME, "9")


async def test_a_version_not_in_the_registry_fails_without_a_metric_series(
    models_dir: Path,
) -> None:
    registry = ModelRegistry(models_dir)
    models = ServingModels(
        registry,
        retry_s=RETRY_S,
        clock=Clock(),
        registered=lambda model, version: version in registry.versions(model),
    )
    forged = [("forged-model", "1"), (NAME, "forged-version")]
    await models.prepare(forged)
    assert set(forged) <= set(models.failures())  # remembered, so not tried on every batch
    for model, version in forged:
        labels = {"model": model, "version": version}
        assert (
            metrics.REGISTRY.get_sample_value("phoenix_model_load_failures_total", labels) is None
        )
        assert metrics.REGISTRY.get_sample_value("phoenix_model_loaded", labels) is None
