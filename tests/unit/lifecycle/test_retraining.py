"""Retraining with stand-ins for the rows (PostgreSQL) and the publisher (Kafka).

The registry is a real folder and registration is real. Most tests use a trainer that
copies the champion's ONNX under the new version (a valid version in milliseconds); one
trains for real. The real services run in tests/integration/test_retraining.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix_stream import metrics
from phoenix_stream.exceptions import ConfigError, SinkError, Unauthenticated, ValidationError
from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployment_record import DeploymentRecord
from phoenix_stream.lifecycle.retrain_request import (
    MAX_REPORT_BYTES,
    RetrainRequest,
    decode_request,
    parse_request,
    read_request,
)
from phoenix_stream.lifecycle.retraining import (
    RetrainJob,
    RetrainRules,
    TrainSpec,
    train_gradient_boosting,
)
from phoenix_stream.lifecycle.training_rows import TrainingRows
from phoenix_stream.serving.manifest import MANIFEST_FILE, MODEL_FILE, Manifest
from phoenix_stream.serving.registration import validate_version
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment
from phoenix_stream.settings import ENV, Settings
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset
from phoenix_stream.training.train import train_version

NOW = 1_750_000_000.0
RULES = RetrainRules(window_s=600.0, min_rows=1000, max_rows=5000)


# ------------------------------------------------------------------------------ stand-ins


@pytest.fixture(scope="module")
def champion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with model ``m`` version 1 (gradient boosting on 2,000 rows), made once."""
    root = tmp_path_factory.mktemp("champion")
    X, y = make_dataset(2000, seed=3)
    train_version(root, "m", "1", X, y, "hist_gradient_boosting", seed=3)
    return root


@pytest.fixture
def models_dir(champion_dir: Path, tmp_path: Path) -> Path:
    """A fresh registry per test, with ``m`` and ``n`` at version 1."""
    target = tmp_path / "models"
    shutil.copytree(champion_dir / "m", target / "m")
    shutil.copytree(champion_dir / "m", target / "n")
    manifest = Manifest.from_file(target / "n" / "1" / MANIFEST_FILE)
    dataclasses.replace(manifest, name="n").write(target / "n" / "1" / MANIFEST_FILE)
    return target


class Rows:
    """Labelled rows from the synthetic generator; records each fetch."""

    def __init__(self, n: int = 1500, fail: Exception | None = None) -> None:
        self.X, self.y = make_dataset(n, seed=11) if n else (np.empty((0, 10)), np.empty(0))
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    async def fetch(
        self, model: str, feature_names: Any, *, since: float, until: float, limit: int
    ) -> TrainingRows:
        self.calls.append(
            {"model": model, "features": tuple(feature_names), "since": since, "until": until,
             "limit": limit}
        )  # fmt: skip
        if self.fail is not None:
            raise self.fail
        n = len(self.y)
        first, last = (since + 1.0, until - 1.0) if n else (None, None)
        return TrainingRows(
            self.X[-limit:], self.y[-limit:].astype(np.int64), tuple(feature_names), first, last
        )


class Publisher:
    """Records deploy calls and answers like the real publisher."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.fail = fail

    async def deploy(
        self, model: str, change: Mapping[str, Any], *, actor: str
    ) -> DeploymentRecord:
        self.calls.append((model, dict(change), actor))
        if self.fail is not None:
            raise self.fail
        deployment = Deployment(model, change["champion"], change["challenger"], "shadow")
        return DeploymentRecord(deployment, generation=len(self.calls) + 100, actor=actor)


def copying_trainer(spec: TrainSpec) -> Manifest:
    """A valid version without training: the champion's ONNX under ``spec.version``."""
    champion = CHAMPIONS[spec.name]
    target = spec.folder / spec.name / spec.version
    target.mkdir(parents=True)
    shutil.copyfile(champion / MODEL_FILE, target / MODEL_FILE)
    manifest = Manifest.from_file(champion / MANIFEST_FILE)
    manifest = dataclasses.replace(
        manifest, version=spec.version, training={"seed": spec.seed, "kind": "copy"}
    )
    manifest.write(target / MANIFEST_FILE)
    return manifest


CHAMPIONS: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def _champions(models_dir: Path) -> None:
    CHAMPIONS.clear()
    CHAMPIONS.update({name: models_dir / name / "1" for name in ("m", "n")})


def job(
    models_dir: Path,
    rows: Rows | None = None,
    publisher: Publisher | None = None,
    trainer: Any = copying_trainer,
    clock: FakeTime | None = None,
    rules: RetrainRules = RULES,
    deployment: Deployment | None = None,
    challenger_by: str = "",
) -> RetrainJob:
    clock = clock or FakeTime()
    return RetrainJob(
        rows or Rows(),
        lambda model: (deployment or Deployment(model, "1")) if model in ("m", "n") else None,
        publisher or Publisher(),
        models_dir,
        rules,
        trainer=trainer,
        challenger_by=lambda model: challenger_by,
        clock=clock.time,
        sleep=clock.sleep,
    )


class FakeTime:
    """A clock that only a sleep moves (from NOW); records the sleeps."""

    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def request(model: str = "m", trigger: str | None = "drift-1", **extra: Any) -> RetrainRequest:
    return RetrainRequest(
        model=model,
        reason=extra.pop("reason", "drift in age"),
        requested_at=NOW - 5,
        actor=extra.pop("actor", "drift"),
        trigger_id=trigger,
        report=extra.pop("report", {"window": [1, 2], "features": {"age": {"D": 0.31}}}),
        data_since=extra.pop("data_since", None),
    )


def jobs_counted(model: str, outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "phoenix_retrain_jobs_total", {"model": model, "outcome": outcome}
    )
    return value or 0.0


# ------------------------------------------------------------------------------ the request


def test_request_round_trips_and_fills_defaults() -> None:
    original = request()
    assert decode_request(original.encode()) == original
    bare = parse_request({"model": "m", "reason": "r", "requested_at": NOW, "actor": "cli"})
    assert (bare.trigger_id, bare.report, bare.data_since) == (None, None, None)
    since = request(data_since=NOW - 30)
    assert decode_request(since.encode()) == since and since.as_dict()["data_since"] == NOW - 30


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "../etc"}, "model"),
        ({"model": 3}, "model"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"trigger_id": 7}, "trigger_id"),
        ({"trigger_id": "a\x00b"}, "trigger_id"),
        ({"report": [1]}, "report"),
        ({"report": {"x": "y" * MAX_REPORT_BYTES}}, "report"),
        ({"requested_at": True}, "requested_at"),
        ({"requested_at": NOW * 1000}, "requested_at"),
        ({"requested_at": float("nan")}, "requested_at"),
        ({"data_since": "yesterday"}, "data_since"),
        ({"data_since": False}, "data_since"),
        ({"data_since": -1.0}, "data_since"),
        ({"actor": None}, "actor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_each_invalid_field_is_named(change: dict[str, Any], field: str) -> None:
    data = {**request().as_dict(), **change}
    with pytest.raises(ValidationError) as caught:
        parse_request(data)
    assert caught.value.field == field


@pytest.mark.parametrize("missing", ["model", "reason", "requested_at", "actor"])
def test_required_fields_are_named(missing: str) -> None:
    data = request().as_dict()
    del data[missing]
    with pytest.raises(ValidationError) as caught:
        parse_request(data)
    assert caught.value.field == missing


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_decode_or_raise_validation_error(raw: bytes) -> None:
    try:
        decoded = decode_request(raw)
    except ValidationError as exc:
        assert exc.field
    else:
        assert decode_request(decoded.encode()) == decoded


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(
    model=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True),
    reason=st.text(min_size=1, max_size=200).filter(lambda s: s.strip() and "\x00" not in s),
    trigger=st.none() | st.text(min_size=1, max_size=50).filter(
        lambda s: s.strip() and "\x00" not in s
    ),
    report=st.none() | st.dictionaries(st.text(max_size=8).filter(lambda s: "\x00" not in s),
                                       _json, max_size=5),
    at=st.floats(946_684_800.0, 4_102_444_800.0),
    since=st.none() | st.floats(946_684_800.0, 4_102_444_800.0),
)  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_valid_requests_survive_the_wire(
    model: str,
    reason: str,
    trigger: str | None,
    report: dict[str, Any] | None,
    at: float,
    since: float | None,
) -> None:
    try:
        original = RetrainRequest(model, reason, at, "drift", trigger, report, since)
        encoded = original.encode()
    except orjson.JSONEncodeError:  # pragma: no cover - the strategy makes plain JSON
        return
    if b"\\u0000" in encoded:
        return  # a NUL inside the report's strings is refused on purpose
    assert decode_request(encoded) == original


# ------------------------------------------------------------------------------ the job


async def test_trains_registers_and_deploys_a_shadow_with_its_reasons(models_dir: Path) -> None:
    rows, publisher = Rows(1500), Publisher()
    before = jobs_counted("m", "deployed")
    outcome = await job(models_dir, rows, publisher, train_gradient_boosting).run(request())
    assert outcome.outcome == "deployed", outcome.reason
    assert (outcome.version, outcome.champion, outcome.rows) == ("2", "1", 1500)
    assert outcome.generation == 101 and outcome.seconds > 0
    assert jobs_counted("m", "deployed") == before + 1

    # The window: the last 600 s, at most max_rows, the champion's features in its order.
    [call] = rows.calls
    assert call == {"model": "m", "features": FEATURE_NAMES, "since": NOW - 600.0,
                    "until": NOW, "limit": 5000}  # fmt: skip

    # Registered: loads and validates; its reference sample comes from the training rows.
    manifest = validate_version(models_dir / "m" / "2")
    assert ModelRegistry(models_dir).versions("m") == ["1", "2"]
    assert manifest.feature_names == FEATURE_NAMES and manifest.training["kind"] == (
        "hist_gradient_boosting"
    )
    reference = manifest.reference_rows()
    training_rows = {tuple(np.float32(v) for v in row) for row in rows.X}
    assert all(tuple(row) in training_rows for row in reference)
    training = manifest.training
    assert training["reason"] == "drift in age" and training["trigger_id"] == "drift-1"
    assert training["requested_by"] == "drift" and training["parent"] == "1"
    assert orjson.loads(str(training["report"])) == request().report
    assert len(str(training["report_sha256"])) == 64
    assert (training["data_window_since"], training["data_window_until"]) == (NOW - 600, NOW)
    assert (training["data_first_at"], training["data_last_at"], training["data_rows"]) == (
        NOW - 599, NOW - 1, 1500
    )  # fmt: skip

    # Deployed as the champion's shadow, with the evidence.
    [(model, change, actor)] = publisher.calls
    assert (model, actor) == ("m", "retrain")
    assert {k: change[k] for k in ("champion", "challenger", "strategy")} == {
        "champion": "1", "challenger": "2", "strategy": "shadow"
    }  # fmt: skip
    assert "drift in age" in change["reason"]
    evidence = change["evidence"]
    assert evidence["trigger_id"] == "drift-1" and evidence["report"] == request().report
    assert evidence["data"] == {
        "rows": 1500, "first_at": NOW - 599, "last_at": NOW - 1, "since": NOW - 600,
        "label_sources": ["http"],
    }  # fmt: skip
    assert 0.5 < evidence["offline"]["roc_auc"] <= 1.0


async def test_too_little_data_fails_clearly_and_trains_nothing(models_dir: Path) -> None:
    publisher, trained = Publisher(), []
    before = jobs_counted("m", "too_little_data")

    def trainer(spec: TrainSpec) -> Manifest:
        trained.append(spec)
        return copying_trainer(spec)

    outcome = await job(models_dir, Rows(600), publisher, trainer).run(request())
    assert outcome.outcome == "too_little_data"
    assert "600 labelled rows" in outcome.reason and "1000 needed" in outcome.reason
    assert outcome.rows == 600 and not trained and not publisher.calls
    assert ModelRegistry(models_dir).versions("m") == ["1"]
    assert jobs_counted("m", "too_little_data") == before + 1


async def test_data_since_starts_the_training_data_where_the_request_says(
    models_dir: Path,
) -> None:
    # A drift alarm's request: learn from the traffic after the alarm only, however long
    # ago the alarm was (the window is the default for a request without it).
    for since in (NOW - 30, NOW - 6000):
        rows = Rows(1500)
        outcome = await job(models_dir, rows).run(request(trigger=f"t{since}", data_since=since))
        assert outcome.outcome == "deployed", outcome.reason
        assert [(c["since"], c["until"]) for c in rows.calls] == [(since, NOW)]
        manifest = validate_version(models_dir / "m" / str(outcome.version))
        assert manifest.training["data_window_since"] == since


class GrowingRows(Rows):
    """Rows whose labels keep arriving: ``step`` more at each fetch, up to ``total``."""

    def __init__(self, first: int, step: int, total: int = 1500) -> None:
        super().__init__(total)
        self.all_X, self.all_y = self.X, self.y
        self.first, self.step = first, step

    async def fetch(
        self, model: str, feature_names: Any, *, since: float, until: float, limit: int
    ) -> TrainingRows:
        n = min(len(self.all_y), self.first + self.step * len(self.calls))
        self.X, self.y = self.all_X[:n], self.all_y[:n]
        return await super().fetch(model, feature_names, since=since, until=until, limit=limit)


async def test_a_drift_request_waits_for_its_labels_then_trains(models_dir: Path) -> None:
    clock, rows = FakeTime(), GrowingRows(first=600, step=150)
    the_job = job(models_dir, rows, clock=clock)
    outcome = await the_job.run(request(data_since=NOW - 10))
    # 600, 750, 900, 1050 labelled rows: three looks every poll_s, then trained.
    assert outcome.outcome == "deployed" and outcome.rows == 1050, outcome.reason
    assert clock.slept == [RULES.poll_s] * 3
    assert [(c["since"], c["until"]) for c in rows.calls] == [
        (NOW - 10, NOW + RULES.poll_s * i) for i in range(4)
    ]


async def test_a_drift_request_waits_at_most_wait_s(models_dir: Path) -> None:
    clock = FakeTime()
    outcome = await job(models_dir, Rows(600), clock=clock).run(
        request(trigger="t-short", data_since=NOW - 30)
    )
    assert outcome.outcome == "too_little_data"
    assert "600 labelled rows received since" in outcome.reason and "1000 needed" in outcome.reason
    assert sum(clock.slept) == RULES.wait_s and max(clock.slept) <= RULES.poll_s
    # A request by hand (no data_since) takes the window as it is: no wait.
    hand = FakeTime()
    assert (await job(models_dir, Rows(600), clock=hand).run(request(trigger=None))).outcome == (
        "too_little_data"
    )
    assert hand.slept == []


async def test_a_trigger_with_too_little_data_may_ask_again_once_labels_came_in(
    models_dir: Path,
) -> None:
    rows, publisher = Rows(600), Publisher()
    the_job = job(models_dir, rows, publisher)
    first = await the_job.run(request())
    assert first.outcome == "too_little_data" and not publisher.calls
    rows.X, rows.y = make_dataset(1500, seed=11)  # the labels of later traffic arrived
    second = await the_job.run(request())
    assert second.outcome == "deployed" and len(publisher.calls) == 1
    third = await the_job.run(request())
    assert third.outcome == "duplicate" and len(publisher.calls) == 1


async def test_versions_follow_the_highest_number_and_skip_one_taken_meanwhile(
    models_dir: Path,
) -> None:
    for name in ("3", "exp-a"):
        shutil.copytree(models_dir / "m" / "1", models_dir / "m" / name)
    the_job = job(models_dir)
    assert the_job.next_version("m") == "4"
    assert the_job.next_version("nothing") == "1"

    def racing_trainer(spec: TrainSpec) -> Manifest:
        # Someone registers the planned version by hand while this one trains.
        shutil.copytree(models_dir / "m" / "1", models_dir / "m" / spec.version)
        return copying_trainer(spec)

    outcome = await job(models_dir, trainer=racing_trainer).run(request(trigger=None))
    assert outcome.outcome == "deployed" and outcome.version == "5"
    assert validate_version(models_dir / "m" / "5").version == "5"


async def test_one_job_at_a_time_per_model(models_dir: Path) -> None:
    release, both = threading.Event(), threading.Event()
    active: list[str] = []
    overlap: list[int] = []
    guard = threading.Lock()

    def slow_trainer(spec: TrainSpec) -> Manifest:
        with guard:
            active.append(spec.name)
            overlap.append(active.count(spec.name))
            if len(active) == 2:
                both.set()
        release.wait(10)
        with guard:
            active.remove(spec.name)
        return copying_trainer(spec)

    the_job = job(models_dir, trainer=slow_trainer)
    first = asyncio.create_task(the_job.run(request(trigger="a")))
    second = asyncio.create_task(the_job.run(request(trigger="b")))
    other = asyncio.create_task(the_job.run(request(model="n", trigger="a")))
    # m's first job and n's job both train; m's second waits for the first.
    assert await asyncio.to_thread(both.wait, 10)
    assert sorted(active) == ["m", "n"]
    release.set()
    results = await asyncio.gather(first, second, other)
    assert [r.outcome for r in results] == ["deployed"] * 3
    assert sorted(r.version or "" for r in results[:2]) == ["2", "3"]
    assert max(overlap) == 1


async def test_a_trigger_runs_once(models_dir: Path) -> None:
    release, entered = threading.Event(), threading.Event()

    def slow_trainer(spec: TrainSpec) -> Manifest:
        entered.set()
        release.wait(10)
        return copying_trainer(spec)

    publisher = Publisher()
    the_job = job(models_dir, publisher=publisher, trainer=slow_trainer)
    before = jobs_counted("m", "duplicate")
    first = asyncio.create_task(the_job.run(request(trigger="t-1")))
    assert await asyncio.to_thread(entered.wait, 10)
    while_running = await the_job.run(request(trigger="t-1"))
    assert while_running.outcome == "duplicate"
    release.set()
    assert (await first).outcome == "deployed"
    after = await the_job.run(request(trigger="t-1"))
    assert after.outcome == "duplicate"
    # A restarted worker has forgotten it, but the registry's manifest remembers.
    restarted = await job(models_dir, publisher=publisher).run(request(trigger="t-1"))
    assert restarted.outcome == "duplicate" and restarted.version == "2"
    assert jobs_counted("m", "duplicate") == before + 3
    assert len(publisher.calls) == 1
    # Without a trigger nothing is deduplicated.
    untriggered = [await the_job.run(request(trigger=None)) for _ in range(2)]
    assert [o.version for o in untriggered] == ["3", "4"]


async def test_a_trigger_another_worker_ran_meanwhile_is_not_registered_twice(
    models_dir: Path,
) -> None:
    # A rebalance moved the retrain partition while this job waited or trained: the new
    # owner ran the same request and registered its version first.
    other = job(models_dir)

    def trainer_overtaken(spec: TrainSpec) -> Manifest:
        assert asyncio.run(other.run(request(trigger="t-race"))).outcome == "deployed"
        return copying_trainer(spec)

    publisher = Publisher()
    outcome = await job(models_dir, publisher=publisher, trainer=trainer_overtaken).run(
        request(trigger="t-race")
    )
    assert (outcome.outcome, outcome.version) == ("duplicate", "2"), outcome.reason
    assert ModelRegistry(models_dir).versions("m") == ["1", "2"] and not publisher.calls


async def test_unknown_model_and_failures_are_outcomes(models_dir: Path) -> None:
    unknown = await job(models_dir).run(request(model="ghost"))
    assert unknown.outcome == "failed" and "no model 'ghost'" in unknown.reason
    assert jobs_counted("ghost", "failed") == 0  # an unregistered name makes no series

    outage = await job(models_dir, Rows(fail=SinkError("PostgreSQL failed"))).run(request())
    assert outage.outcome == "failed" and "PostgreSQL failed" in outage.reason

    refused = Publisher(fail=ValidationError("challenger", "not registered here"))
    undeployed = await job(models_dir, publisher=refused).run(request(trigger="x"))
    assert undeployed.outcome == "failed" and undeployed.version == "2"
    assert "registered, but not deployed" in undeployed.reason

    one_class = Rows(1500)
    one_class.y[:] = 0
    untrainable = await job(models_dir, one_class, trainer=train_gradient_boosting).run(
        request(trigger="y")
    )
    assert untrainable.outcome == "failed" and "both classes" in untrainable.reason
    assert ModelRegistry(models_dir).versions("m") == ["1", "2"]


async def test_a_bug_is_counted_and_raised(models_dir: Path) -> None:
    def broken(spec: TrainSpec) -> Manifest:
        raise KeyError("bug")

    before = jobs_counted("m", "failed")
    with pytest.raises(KeyError):
        await job(models_dir, trainer=broken).run(request())
    assert jobs_counted("m", "failed") == before + 1
    assert not any(p.name.startswith(".") for p in (models_dir / "m").iterdir())


def test_rules_come_from_checked_settings() -> None:
    values = {
        "retrain_window_s": 120.0, "retrain_min_rows": 1500, "retrain_max_rows": 9000,
        "retrain_wait_s": 30.0, "retrain_min_interval_s": 60.0,
    }  # fmt: skip
    env = {ENV[name]: str(value) for name, value in values.items()}
    assert RetrainRules.from_settings(Settings.from_env(env)) == RetrainRules(
        120.0, 1500, 9000, 30.0, min_interval_s=60.0
    )
    for name, bad in (
        ("retrain_window_s", "0"),
        ("retrain_min_rows", "999"),
        ("retrain_max_rows", "1499"),
        ("retrain_wait_s", "-1"),
        ("retrain_min_interval_s", "-1"),
    ):
        with pytest.raises(ConfigError, match=ENV[name]):
            Settings.from_env({**env, ENV[name]: bad})


# ------------------------------------------------------------------ limits and who decides


async def test_a_model_trains_at_most_once_per_min_interval(models_dir: Path) -> None:
    clock = FakeTime()
    rules = dataclasses.replace(RULES, min_interval_s=300.0)
    retrain = job(models_dir, clock=clock, rules=rules)
    before = jobs_counted("m", "rate_limited")
    assert (await retrain.run(request(trigger=None))).outcome == "deployed"
    limited = await retrain.run(request(trigger="other"))
    assert limited.outcome == "rate_limited" and "PHOENIX_RETRAIN_MIN_INTERVAL_S" in limited.reason
    assert jobs_counted("m", "rate_limited") == before + 1
    assert (await retrain.run(request(model="n"))).outcome == "deployed"  # per model
    clock.now += 301
    assert (await retrain.run(request(trigger="other"))).outcome == "deployed"  # asks again
    assert ModelRegistry(models_dir).versions("m") == ["1", "2", "3"]


async def test_too_little_data_does_not_use_up_the_interval(models_dir: Path) -> None:
    rows = Rows(600)
    rules = dataclasses.replace(RULES, min_interval_s=300.0)
    retrain = job(models_dir, rows, rules=rules)
    assert (await retrain.run(request())).outcome == "too_little_data"
    rows.X, rows.y = make_dataset(1500, seed=11)
    assert (await retrain.run(request())).outcome == "deployed"


async def test_a_challenger_a_person_deployed_is_not_replaced_unasked(models_dir: Path) -> None:
    publisher = Publisher()
    shadowed = Deployment("m", "1", "9", "shadow")  # the person's challenger
    kept = await job(
        models_dir, publisher=publisher, deployment=shadowed, challenger_by="admin:alice"
    ).run(request())
    assert kept.outcome == "refused" and "admin:alice" in kept.reason
    assert not publisher.calls and ModelRegistry(models_dir).versions("m") == ["1"]

    replaced = await job(
        models_dir, publisher=publisher, deployment=shadowed, challenger_by="admin:alice"
    ).run(dataclasses.replace(request(), replace_challenger=True))
    assert replaced.outcome == "deployed" and len(publisher.calls) == 1

    # A challenger a retraining deployed is replaced by the next one.
    again = await job(
        models_dir, publisher=publisher, deployment=shadowed, challenger_by="retrain"
    ).run(request(trigger="drift-2"))
    assert again.outcome == "deployed"


def test_read_request_verifies_the_tag_and_the_key() -> None:
    auth, topic = ControlAuth("k" * 32), "retrain"
    original = dataclasses.replace(request(), replace_challenger=True)
    assert read_request(topic, b"m", original.seal(auth, topic), auth) == original
    for key, value, field in (
        (b"m", original.encode(), "auth"),
        (b"m", ControlAuth("x" * 32).seal(topic, original.as_dict()), "auth"),
        (b"m", original.seal(auth, "deployments"), "auth"),
        (b"other", original.seal(auth, topic), "key"),
    ):
        with pytest.raises(Unauthenticated) as caught:
            read_request(topic, key, value, auth)
        assert caught.value.field == field
    with pytest.raises(ValidationError) as invalid:
        forged = {**original.as_dict(), "replace_challenger": "yes"}
        read_request(topic, b"m", auth.seal(topic, forged), auth)
    assert invalid.value.field == "replace_challenger"
