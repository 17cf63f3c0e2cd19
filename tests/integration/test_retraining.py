"""Retraining on the real services: the training rows from PostgreSQL, a real training,
registration into a registry folder, and the request path (HTTP and CLI) onto the topic.

The retrain agent (which consumes the topic and calls ``RetrainJob``) is not in the tree
yet, so the job runs in this test process against the real PostgreSQL and a real
registry folder, with a stand-in publisher that records the deploy call and checks it is
a valid deployment record. The HTTP endpoint and the CLI run through a real worker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest

from phoenix_stream.lifecycle.control_auth import ControlAuth
from phoenix_stream.lifecycle.deployment_record import DeploymentRecord, parse_record
from phoenix_stream.lifecycle.feedback import ParsedFeedback
from phoenix_stream.lifecycle.retrain_request import RetrainRequest, parse_request
from phoenix_stream.lifecycle.retraining import RetrainJob, RetrainRules
from phoenix_stream.serving.registration import validate_version
from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.serving.router import Deployment
from phoenix_stream.storage.feedback import FeedbackStore
from phoenix_stream.storage.sink import PredictionSink
from phoenix_stream.storage.training_data import TrainingData
from phoenix_stream.testing import consume_json
from phoenix_stream.tools.worker_process import WorkerProcess, settings_env
from phoenix_stream.training.datagen import FEATURE_NAMES, make_dataset

MODEL = "credit-risk"
TOKEN = "retrain-token"
NOW = time.time()  # rows are stored around it; the jobs below read the same clock

# ---------------------------------------------------------------- PostgreSQL, own schema


def row(
    request_id: str,
    features: Mapping[str, Any],
    at: float,
    *,
    model: str = MODEL,
    degraded: bool = False,
) -> dict[str, Any]:
    """A served prediction as the sink takes it, received at ``at`` (epoch seconds)."""
    return {
        "request_id": request_id,
        "entity_id": "e",
        "model": model,
        "version": "1",
        "variant": "champion",
        "score": 0.5,
        "label": 1,
        "features": dict(features),
        "defaults_used": [],
        "degraded": degraded,
        "source": "kafka",
        "received_at": at,
        "predicted_at": at + 0.002,
        "latency_ms": 2.0,
    }


def vector(x: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(FEATURE_NAMES, x, strict=True)}


async def store(
    sink: PredictionSink, rows: list[dict[str, Any]], labels: Mapping[str, int]
) -> None:
    """Write ``rows`` and the labels of some of them (request_id -> 0/1)."""
    await sink.write(rows)
    feedback = FeedbackStore(sink.database)
    # Through the authenticated path (source http:...): retraining counts only those.
    items = [ParsedFeedback(rid, y, NOW) for rid, y in labels.items()]
    report = await feedback.attach(items, "test", None)
    assert report.written == len(labels)


async def test_training_rows_are_the_window_joined_with_feedback(sink: PredictionSink) -> None:
    X, y = make_dataset(40, seed=5)
    since, until = NOW - 600, NOW
    good = [row(f"in{i}", vector(X[i]), since + 10 * i) for i in range(30)]
    # Each of these is left out, for the reason in its id.
    x0 = vector(X[0])
    left_out = [
        row("before-window", x0, since - 1),
        row("at-until", x0, until),
        row("other-model", x0, since + 5, model="other"),
        row("degraded", x0, since + 5, degraded=True),
        row("missing-feature", {k: v for k, v in x0.items() if k != "age"}, since + 5),
        row("null-feature", {**x0, "age": None}, since + 5),
        row("beyond-float32", {**x0, "age": 1e300}, since + 5),
    ]
    unlabelled = row("no-feedback", x0, since + 5)
    labels = {r["request_id"]: int(y[i]) for i, r in enumerate(good)}
    labels.update({r["request_id"]: 1 for r in left_out})
    await store(sink, [*good, *left_out, unlabelled], labels)
    # An extra feature the champion does not use is ignored; the order is the caller's.
    await store(sink, [row("extra", {**vector(X[31]), "zz": 1.0}, since + 400)], {"extra": 0})

    data = TrainingData(sink.database)
    rows = await data.fetch(MODEL, FEATURE_NAMES, since=since, until=until, limit=1000)
    assert rows.X.dtype == np.float32 and rows.y.dtype == np.int64
    assert rows.feature_names == FEATURE_NAMES
    # Oldest first: the 30 good rows by time, "extra" (at +400) among them.
    expected = [(since + 10 * i, X[i], int(y[i])) for i in range(30)]
    expected.append((since + 400, X[31], 0))
    expected.sort(key=lambda e: e[0])
    np.testing.assert_array_equal(rows.X, np.array([e[1] for e in expected]))
    np.testing.assert_array_equal(rows.y, [e[2] for e in expected])
    assert rows.first_at == pytest.approx(since, abs=1e-3)
    assert rows.last_at == pytest.approx(since + 400, abs=1e-3)

    reordered = tuple(reversed(FEATURE_NAMES))
    newest = await data.fetch(MODEL, reordered, since=since, until=until, limit=5)
    assert len(newest.y) == 5
    np.testing.assert_array_equal(newest.X, np.array([e[1][::-1] for e in expected[-5:]]))
    assert newest.first_at == pytest.approx(expected[-5][0], abs=1e-3)

    nothing = await data.fetch("other", FEATURE_NAMES, since=NOW, until=NOW + 1, limit=10)
    assert nothing.X.shape == (0, len(FEATURE_NAMES)) and nothing.first_at is None


# ---------------------------------------------------------------- the job, for real


class RecordingPublisher:
    """Stands in for DeploymentPublisher (Kafka, board): records the call, validates it."""

    def __init__(self) -> None:
        self.records: list[DeploymentRecord] = []

    async def deploy(
        self, model: str, change: Mapping[str, Any], *, actor: str
    ) -> DeploymentRecord:
        # The same parse the publisher applies: evidence size, names, strategy.
        record = parse_record(
            {**change, "model": model, "generation": 1, "actor": actor, "decided_at": time.time()}
        )
        self.records.append(record)
        return record


@pytest.fixture
def registry(models_dir: Path, tmp_path: Path) -> Path:
    """A copy of the demo models (credit-risk 1 and 2)."""
    target = tmp_path / "models"
    shutil.copytree(models_dir / MODEL, target / MODEL)
    return target


async def test_a_job_trains_registers_and_shadows_a_version_from_stored_feedback(
    sink: PredictionSink, registry: Path
) -> None:
    X, y = make_dataset(2600, seed=21)
    rows = [row(f"r{i}", vector(X[i]), NOW - 500 + i * 0.1) for i in range(len(X))]
    await store(sink, rows, {f"r{i}": int(y[i]) for i in range(len(X))})
    publisher = RecordingPublisher()
    job = RetrainJob(
        TrainingData(sink.database),
        lambda model: Deployment(model, "1"),
        publisher,
        registry,
        RetrainRules(window_s=600.0, min_rows=2000, max_rows=2500),
        clock=lambda: NOW,
    )
    report = {"features": {"age": {"statistic": 0.31, "p_value": 1e-9}}, "windows": 2}
    request = RetrainRequest(MODEL, "drift in age", NOW, "drift", "drift-42", report)

    outcome = await job.run(request)

    assert outcome.outcome == "deployed", outcome.reason
    assert (outcome.version, outcome.champion, outcome.rows) == ("3", "1", 2500)
    # Registered: validates, loads and scores through the serving engine.
    manifest = validate_version(registry / MODEL / "3")
    loaded = ModelRegistry(registry).load(MODEL, "3")
    proba = loaded.predict_proba(manifest.reference_rows())
    assert proba.shape == (len(manifest.reference_rows()),) and np.isfinite(proba).all()
    assert manifest.feature_names == FEATURE_NAMES and manifest.metrics["roc_auc"] > 0.6
    training = manifest.training
    assert (training["trigger_id"], training["reason"], training["parent"]) == (
        "drift-42", "drift in age", "1"
    )  # fmt: skip
    assert orjson.loads(str(training["report"])) == report
    assert training["data_rows"] == 2500
    # The newest 2,500 of 2,600 rows: received from r100 (NOW - 490) to r2599.
    assert training["data_first_at"] == pytest.approx(NOW - 490, abs=1e-3)
    assert training["data_last_at"] == pytest.approx(NOW - 500 + 2599 * 0.1, abs=1e-3)
    # Deployed as a shadow of the champion, with the evidence.
    [record] = publisher.records
    d = record.deployment
    assert (d.champion, d.challenger, d.strategy, record.actor) == ("1", "3", "shadow", "retrain")
    assert record.evidence["trigger_id"] == "drift-42" and record.evidence["report"] == report
    assert record.evidence["data"]["rows"] == 2500
    # The same trigger again trains nothing.
    again = await job.run(request)
    assert again.outcome == "duplicate" and len(publisher.records) == 1


async def test_too_few_stored_labels_fail_the_job(sink: PredictionSink, registry: Path) -> None:
    X, y = make_dataset(300, seed=2)
    rows = [row(f"s{i}", vector(X[i]), NOW - 100) for i in range(len(X))]
    await store(sink, rows, {f"s{i}": int(y[i]) for i in range(len(X))})
    job = RetrainJob(
        TrainingData(sink.database),
        lambda m: Deployment(m, "1"),
        RecordingPublisher(),
        registry,
        clock=lambda: NOW,
    )
    outcome = await job.run(RetrainRequest(MODEL, "by hand", NOW, "test"))
    assert outcome.outcome == "too_little_data" and outcome.rows == 300
    assert ModelRegistry(registry).versions(MODEL) == ["1", "2"]


# ---------------------------------------------------------------- HTTP and CLI, via a worker


async def post(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.post(url, data=orjson.dumps(body), headers=headers) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def test_endpoint_and_cli_put_requests_on_the_retrain_topic(worker_factory: Any) -> None:
    worker: WorkerProcess = await worker_factory.start(admin_token=TOKEN)
    url = f"{worker.base_url}/v1/models/{MODEL}/retrain"
    assert (await post(url, {}, token=None))[0] == 401
    assert (await post(url, {}, token="wrong"))[0] == 403
    status, body = await post(f"{worker.base_url}/v1/models/ghost/retrain", {})
    assert (status, body["field"]) == (404, "model")
    status, body = await post(url, {"colour": "red"})
    assert (status, body["field"]) == (422, "colour")
    status, body = await post(url, {"report": [1, 2]})
    assert (status, body["field"]) == (422, "report")
    status, body = await post(url, {"data_since": "an hour ago"})
    assert (status, body["field"]) == (422, "data_since")

    since = time.time() - 3600
    sent = {
        "reason": "drift in age", "trigger_id": "alarm-7", "report": {"D": 0.3}, "data_since": since
    }  # fmt: skip
    status, body = await post(url, sent)
    assert status == 202, body
    assert body["topic"] == worker.settings.topic("retrain")
    # This worker runs the default agents: nothing here will read the request.
    assert "does not run the retrain agent (PHOENIX_AGENTS)" in body["warning"]

    env = {
        **os.environ,
        **settings_env(worker.settings),
        "PHOENIX_ADMIN_URL": worker.base_url,
    }
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "phoenix_stream", "retrain", MODEL, "--reason", "cli asks"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "retrain requested (cli asks)" in cli.stdout
    assert cli.stderr.startswith("warning: this worker does not run the retrain agent")

    records = await consume_json(
        worker.settings.kafka_url, worker.settings.topic("retrain"), expected=2
    )
    auth, topic = ControlAuth(worker.settings.control_key), worker.settings.topic("retrain")
    requests = [parse_request(auth.verify(topic, r)) for r in records]  # both signed
    assert [(r.model, r.reason, r.actor, r.trigger_id) for r in requests] == [
        (MODEL, "drift in age", "admin", "alarm-7"),
        (MODEL, "cli asks", "admin:cli", None),
    ]
    assert requests[0].report == {"D": 0.3}
    assert (requests[0].data_since, requests[1].data_since) == (since, None)
    assert all(abs(r.requested_at - time.time()) < 300 for r in requests)
