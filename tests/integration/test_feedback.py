"""Feedback in, joined to predictions in PostgreSQL, and online evaluation per variant.

The first tests drive ``FeedbackStore`` on the real embedded PostgreSQL, each in a schema
of its own so counts are exact; the last ones run a real worker: requests and feedback
through Kafka and ``POST /v1/feedback``, and the evaluation endpoint checked against
sklearn on the joined rows.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped,unused-ignore]
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sklearn import metrics as skm

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.lifecycle.evaluation import AUC_MIN_PER_CLASS
from phoenix_stream.lifecycle.evidence import ArmSummary, PairedSummary
from phoenix_stream.lifecycle.feedback import ParsedFeedback
from phoenix_stream.lifecycle.label_sources import LabelSources
from phoenix_stream.storage.evaluations import EvaluationStore
from phoenix_stream.storage.feedback import FeedbackStore
from phoenix_stream.storage.sink import PredictionSink
from phoenix_stream.testing import POLL_S, consume_json, metric_reaches, metric_value
from phoenix_stream.testing import prediction_rows as stored_predictions
from phoenix_stream.tools.worker_process import WorkerProcess

NOW = time.time()
FEEDBACK_TOKEN = "feedback-test-token-0123"

# ---------------------------------------------------------------- the store, on PostgreSQL


@pytest.fixture
def store(sink: PredictionSink) -> FeedbackStore:
    # Kafka labels trusted: these tests check the statements' arithmetic; which sources
    # count is test_only_trusted_sources_count.
    trusted = LabelSources(trust_kafka=True)
    return FeedbackStore(sink.database, min_backoff_s=0.05, max_backoff_s=0.5, sources=trusted)


@pytest.fixture
def evaluations(sink: PredictionSink) -> EvaluationStore:
    return EvaluationStore(sink.database, LabelSources(trust_kafka=True))


@pytest.fixture
async def conn(services: ServiceAddresses, schema: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(
        services.postgres_dsn, server_settings={"search_path": schema}
    )
    try:
        yield connection
    finally:
        await connection.close()


def prediction(
    request_id: str, version: str, variant: str, score: float, at: float, threshold: float = 0.5
) -> dict[str, Any]:
    """A prediction row as the sink takes it."""
    return {
        "request_id": request_id,
        "entity_id": "e1",
        "model": "m",
        "version": version,
        "variant": variant,
        "score": score,
        "label": int(score >= threshold),
        "features": {"x": 1.0},
        "defaults_used": [],
        "degraded": False,
        "source": "kafka",
        "received_at": at,
        "predicted_at": at + 0.001,
        "latency_ms": 1.0,
    }


def fb(request_id: str, label: int) -> ParsedFeedback:
    return ParsedFeedback(request_id, label, NOW)


async def test_first_label_wins_and_duplicates_conflicts_orphans_are_counted(
    sink: PredictionSink, store: FeedbackStore, conn: Any
) -> None:
    await sink.write([prediction(f"r{i}", "1", "champion", 0.7, NOW) for i in range(4)])
    report = await store.write([fb("r0", 1), fb("r1", 0), fb("ghost", 1), fb("r0", 0)])
    # r0 twice in one batch: the first (1) wins, the second is a conflicting duplicate.
    assert (report.written, report.duplicates, report.conflicts, report.orphans) == (3, 1, 1, 1)
    assert report.conflict_examples == [("r0", 1, 0)]
    # A label delay for each label stored now with its prediction (r0, r1), the orphan none:
    # the predictions were made at NOW, and the labels stored just now.
    assert len(report.label_delays) == 2
    assert all(abs(delay - (time.time() - NOW)) < 60 for delay in report.label_delays)
    again = await store.write([fb("r1", 0), fb("r1", 1), fb("r2", 1), fb("ghost", 0)])
    assert (again.written, again.duplicates, again.conflicts, again.orphans) == (1, 3, 2, 0)
    rows = {
        r["request_id"]: (r["label"], r["orphan"])
        for r in await conn.fetch("SELECT request_id, label, orphan FROM feedback")
    }
    assert rows == {"r0": (1, False), "r1": (0, False), "r2": (1, False), "ghost": (1, True)}
    assert (await store.write([])).written == 0


async def test_old_orphans_expire_and_late_predictions_adopt_theirs(
    sink: PredictionSink, store: FeedbackStore, conn: Any
) -> None:
    await store.write([fb(f"early{i}", 1) for i in range(5)] + [fb("never", 0)])
    assert await conn.fetchval("SELECT count(*) FROM feedback WHERE orphan") == 6
    nothing = await store.expire_orphans(ttl_s=3600.0)
    assert (nothing.expired, nothing.adopted) == (0, 0)
    # The predictions of three early labels arrive hours late; the others never do.
    await sink.write([prediction(f"early{i}", "1", "champion", 0.9, NOW) for i in range(3)])
    first = await store.expire_orphans(ttl_s=0.0, limit=4)  # bounded: the 4 oldest
    second = await store.expire_orphans(ttl_s=0.0)
    assert first.expired + second.expired == 3  # early3, early4, never
    assert first.adopted + second.adopted == 3
    assert first.expired + first.adopted == 4
    left = await conn.fetch("SELECT request_id, orphan FROM feedback ORDER BY request_id")
    assert [(r["request_id"], r["orphan"]) for r in left] == [
        ("early0", False),
        ("early1", False),
        ("early2", False),
    ]


async def test_only_trusted_sources_count(sink: PredictionSink, conn: Any) -> None:
    untrusting = FeedbackStore(sink.database)  # the default: HTTP labels only
    trusting = FeedbackStore(sink.database, sources=LabelSources(trust_kafka=True))
    untrusting_evaluations = EvaluationStore(sink.database)
    trusting_evaluations = EvaluationStore(sink.database, LabelSources(trust_kafka=True))
    await sink.write([prediction(f"s{i}", "1", "champion", 0.9, NOW) for i in range(6)])
    await untrusting.write([fb("s0", 0), fb("s1", 0), fb("s2", 1)])  # from Kafka
    await conn.execute(  # a label stored before sources were recorded
        "INSERT INTO feedback (request_id, label, observed_at, source) "
        "VALUES ('s3', 1, now(), 'unrecorded')"
    )
    assert await untrusting_evaluations.evaluate("m", 100) == []
    assert [r.n for r in await trusting_evaluations.evaluate("m", 100)] == [3]
    assert (await untrusting_evaluations.arm_summaries("m", "1", "2", 0.0))["1"].n == 0
    assert (await trusting_evaluations.arm_summaries("m", "1", "2", 0.0))["1"].n == 3

    # An authenticated label replaces an untrusted one; a trusted one is never replaced.
    first = await untrusting.attach([fb("s0", 1), fb("s3", 0), fb("s4", 1)], "feedback-1", None)
    assert (first.written, first.duplicates, first.missing) == (3, 0, [])
    again = await untrusting.attach([fb("s4", 0)], "feedback-2", None)
    assert (again.written, again.duplicates, again.conflicts) == (0, 1, 1)
    # A token scoped to another model, and a request with no stored prediction.
    refused = await untrusting.attach(
        [fb("s5", 1), fb("nobody", 1)], "feedback-3", frozenset({"x"})
    )
    assert [i.request_id for i in refused.out_of_scope] == ["s5"]
    assert [i.request_id for i in refused.missing] == ["nobody"]
    rows = await conn.fetch("SELECT request_id, label, source FROM feedback ORDER BY request_id")
    assert [tuple(r) for r in rows] == [
        ("s0", 1, "http:feedback-1"),
        ("s1", 0, "kafka"),
        ("s2", 1, "kafka"),
        ("s3", 0, "http:feedback-1"),
        ("s4", 1, "http:feedback-1"),
    ]
    assert [r.n for r in await untrusting_evaluations.evaluate("m", 100)] == [3]
    assert trusting.sources.names == ["http", "kafka"] and untrusting.sources.names == ["http"]


async def test_orphans_beyond_the_bound_are_refused(sink: PredictionSink, conn: Any) -> None:
    bounded = FeedbackStore(sink.database, orphan_max=3)
    await sink.write([prediction("known", "1", "champion", 0.9, NOW)])
    report = await bounded.write([fb(f"o{i}", 1) for i in range(5)] + [fb("known", 1)])
    assert (report.written, report.orphans) == (4, 3)
    assert [i.request_id for i in report.overflow] == ["o3", "o4"]
    # Full: a new orphan is refused, a label of a stored prediction is not; a repeat of a
    # held orphan is a duplicate, not an overflow.
    later = await bounded.write([fb("o9", 0), fb("o0", 1)])
    assert ([i.request_id for i in later.overflow], later.duplicates) == (["o9"], 1)
    assert await conn.fetchval("SELECT count(*) FROM feedback WHERE orphan") == 3


def _reference(
    rows: list[dict[str, Any]], labels: dict[str, int], window: int
) -> dict[tuple[str, str], dict[str, Any]]:
    """Metrics per (version, variant) over the latest ``window`` labelled rows, by sklearn."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["request_id"] in labels:
            groups.setdefault((row["version"], row["variant"]), []).append(row)
    out = {}
    for key, members in groups.items():
        members.sort(key=lambda r: (r["predicted_at"], r["request_id"]), reverse=True)
        latest = members[:window]
        y = np.array([labels[r["request_id"]] for r in latest])
        s = np.array([r["score"] for r in latest])
        p = np.array([r["label"] for r in latest])
        enough = min(int(y.sum()), len(y) - int(y.sum())) >= AUC_MIN_PER_CLASS
        out[key] = {
            "n": len(latest),
            "accuracy": skm.accuracy_score(y, p),
            "log_loss": skm.log_loss(y, y_proba=s, labels=[0, 1]),
            "brier": skm.brier_score_loss(y, s, labels=[0, 1]),
            "auc": skm.roc_auc_score(y, s) if enough else None,
            "positive_rate": float(y.mean()),
        }
    return out


def _assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["n"] == want["n"]
    for name in ("accuracy", "log_loss", "brier", "positive_rate"):
        assert got[name] == pytest.approx(want[name], rel=1e-9), name
    if want["auc"] is None:
        assert got["auc"] is None
    else:
        assert got["auc"] == pytest.approx(want["auc"], rel=1e-9)


async def test_evaluation_and_summaries_equal_a_direct_computation(
    sink: PredictionSink, store: FeedbackStore, evaluations: EvaluationStore
) -> None:
    rng = random.Random(11)
    served: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    labels: dict[str, int] = {}
    for i in range(1500):
        at = NOW - 3600 + i  # predicted_at increases with i; i decides the window
        request_id = f"q{i:05d}"
        truth = int(rng.random() < 0.4)
        noisy = min(max(0.35 * truth + 0.65 * rng.random(), 0.0), 1.0)
        score = 0.0 if i % 97 == 0 else 1.0 if i % 89 == 0 else round(noisy, 3)  # clipping
        version, variant = ("2", "challenger") if i % 5 == 0 else ("1", "champion")
        served.append(prediction(request_id, version, variant, score, at))
        if variant == "champion":  # the challenger scores in shadow what the champion serves
            other = round(min(max(0.5 * truth + 0.5 * rng.random(), 0.0), 1.0), 3)
            shadow.append(prediction(request_id, "2", "challenger", other, at, threshold=0.45))
        if i % 3 != 0:  # two thirds labelled
            labels[request_id] = truth
    await sink.write(served)
    await sink.write(shadow, table="shadow_predictions")
    await store.write([fb(r, y) for r, y in labels.items()] + [fb("no-such-request", 1)])

    for window in (5000, 300):
        results = await evaluations.evaluate("m", window)
        want = _reference([*served, *({**r, "variant": "shadow"} for r in shadow)], labels, window)
        got = {(r.version, r.variant): r.as_dict() for r in results}
        assert set(got) == {("1", "champion"), ("2", "challenger"), ("2", "shadow")}
        assert set(got) == set(want)
        for key in want:
            _assert_matches(got[key], want[key])
    # The challenger served ~200 labelled rows, ~80 positives: AUC reported at 50 per class.
    assert got[("2", "challenger")]["auc"] is not None
    assert await evaluations.evaluate("no-such-model", 100) == []
    few = await evaluations.evaluate("m", 60)  # 60 labelled rows cannot hold 50 of each class
    assert all(r.auc is None and r.n == 60 for r in few)

    since = NOW - 3600 + 500  # requests 500 and later
    shadow_by_id = {r["request_id"]: r for r in shadow}
    pairs = [
        (int(p["label"] != labels[p["request_id"]]), int(s["label"] != labels[p["request_id"]]))
        for p in served
        if p["variant"] == "champion"
        and p["received_at"] >= since
        and p["request_id"] in labels
        and (s := shadow_by_id[p["request_id"]])
    ]
    paired = await evaluations.paired_summary("m", "1", "2", since)
    assert paired == PairedSummary(
        len(pairs),
        float(sum(c - x for c, x in pairs)),
        float(sum((c - x) ** 2 for c, x in pairs)),
        float(sum(c for c, _ in pairs)),
    )
    assert paired.n > 500

    arms = await evaluations.arm_summaries("m", "1", "2", since)
    for version in ("1", "2"):
        losses = [
            int(p["label"] != labels[p["request_id"]])
            for p in served
            if p["version"] == version and p["received_at"] >= since and p["request_id"] in labels
        ]
        assert arms[version] == ArmSummary(len(losses), float(sum(losses)), float(sum(losses)))
    assert (await evaluations.arm_summaries("m", "1", "9", since))["9"] == ArmSummary()


async def test_evaluations_are_stored_about_once_per_period(
    sink: PredictionSink, store: FeedbackStore, evaluations: EvaluationStore, conn: Any
) -> None:
    await sink.write([prediction(f"e{i}", "1", "champion", 0.8, NOW) for i in range(10)])
    await store.write([fb(f"e{i}", i % 2) for i in range(10)])
    results = await evaluations.evaluate("m", 100)
    assert await evaluations.record_evaluation("m", results, 100, min_gap_s=3600.0)
    assert not await evaluations.record_evaluation("m", results, 100, min_gap_s=3600.0)
    assert await evaluations.record_evaluation("m", results, 100, min_gap_s=0.0)
    rows = await conn.fetch("SELECT * FROM evaluations ORDER BY evaluated_at")
    assert len(rows) == 2
    assert (rows[0]["model"], rows[0]["version"], rows[0]["variant"]) == ("m", "1", "champion")
    assert (rows[0]["n"], rows[0]["window_rows"], rows[0]["accuracy"]) == (10, 100, 0.5)
    assert rows[0]["auc"] is None


# ----------------------------------------------------------------- a real worker, end to end


@pytest.fixture(scope="module")
async def worker(worker_factory: Any) -> WorkerProcess:
    # Kafka labels count here (the test is their only producer), HTTP ones need a token.
    started: WorkerProcess = await worker_factory.start(
        challenger_share=0.5,
        evaluation_interval_s=1.0,
        feedback_tokens=FEEDBACK_TOKEN,
        trust_kafka_feedback=True,
    )
    return started


async def feedback_rows(
    dsn: str, prefix: str, until: Callable[[dict[str, int]], bool], timeout_s: float = 60.0
) -> dict[str, int]:
    """request_id -> stored label for ids starting with ``prefix``, once ``until`` holds."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await connection.fetch(
                "SELECT request_id, label FROM feedback WHERE starts_with(request_id, $1)", prefix
            )
            found = {r["request_id"]: int(r["label"]) for r in rows}
            if until(found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(POLL_S)
    finally:
        await connection.close()


def has(ids: set[str]) -> Callable[[Any], bool]:
    return lambda found: ids <= {r if isinstance(r, str) else r["request_id"] for r in found}


async def send(producer: AIOKafkaProducer, topic: str, value: Any, key: str) -> None:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    await producer.send(topic, raw, key=key.encode())


async def test_feedback_flows_joins_and_evaluates(
    worker: WorkerProcess, producer: AIOKafkaProducer, services: ServiceAddresses
) -> None:
    settings = worker.settings
    dsn, base = services.postgres_dsn, worker.base_url
    requests_topic, feedback_topic = settings.topic("requests"), settings.topic("feedback")
    run = uuid.uuid4().hex[:8]
    rng = random.Random(5)

    def request(i: int) -> dict[str, Any]:
        return {"request_id": f"{run}-{i}", "entity_id": f"c{i % 2000:06d}"}

    # Late feedback: labels for 20 requests arrive before the requests themselves.
    late = {f"{run}-{i}": rng.randint(0, 1) for i in range(400, 420)}
    for request_id, label in late.items():
        await send(producer, feedback_topic, {"request_id": request_id, "label": label}, request_id)
    ghosts = {f"{run}-ghost-{i}": 1 for i in range(15)}  # never requested
    await send(
        producer,
        feedback_topic,
        [{"request_id": r, "label": y, "observed_at": NOW} for r, y in ghosts.items()],
        "ghosts",
    )
    await producer.flush()
    await feedback_rows(dsn, f"{run}-", has({*late, *ghosts}))

    for i in [*range(400), *range(400, 420)]:
        await send(producer, requests_topic, request(i), request(i)["entity_id"])
    await producer.flush()
    ids = {f"{run}-{i}" for i in range(420)}
    predictions = await stored_predictions(dsn, f"{run}-", until=has(ids))
    assert {r["request_id"] for r in predictions} == ids
    scores = {r["request_id"]: float(r["score"]) for r in predictions}

    # Labels that follow the scores (so AUC means something): 300 through Kafka (some in
    # list records), 80 through HTTP in three shapes.
    labels = {
        f"{run}-{i}": int(rng.random() < 0.25 + 0.5 * scores[f"{run}-{i}"]) for i in range(380)
    }
    labels.update(late)
    kafka_ids = [f"{run}-{i}" for i in range(300)]
    for start in range(0, 100, 10):
        chunk = kafka_ids[start : start + 10]
        await send(
            producer, feedback_topic, [{"request_id": r, "label": labels[r]} for r in chunk], "b"
        )
    for request_id in kafka_ids[100:]:
        await send(
            producer,
            feedback_topic,
            {"request_id": request_id, "label": labels[request_id]},
            request_id,
        )
    bad = [
        b'{"request_id": "x", "label": ',
        orjson.dumps({"request_id": f"{run}-bad", "label": 2}),
        orjson.dumps({"label": 1}),
        orjson.dumps({"request_id": f"{run}-bad2", "label": 1, "colour": "red"}),
    ]
    for index, raw in enumerate(bad):
        await send(producer, feedback_topic, raw, f"bad-{run}-{index}")
    await producer.flush()

    http_ids = [f"{run}-{i}" for i in range(300, 380)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def post(body: Any) -> tuple[int, Any]:
            raw = body if isinstance(body, bytes) else orjson.dumps(body)
            headers = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
            async with http.post(f"{base}/v1/feedback", data=raw, headers=headers) as response:
                return response.status, orjson.loads(await response.read())

        for request_id in http_ids[:10]:
            assert await post({"request_id": request_id, "label": labels[request_id]}) == (
                202,
                {"accepted": 1, "errors": []},
            )
        wrapped = [{"request_id": r, "label": labels[r]} for r in http_ids[10:40]]
        status, body = await post({"feedback": [*wrapped, {"request_id": "y", "label": "yes"}]})
        assert (status, body["accepted"]) == (202, 30)
        assert [(e["index"], e["field"]) for e in body["errors"]] == [(30, "label")]
        status, body = await post([{"request_id": r, "label": labels[r]} for r in http_ids[40:]])
        assert (status, body) == (202, {"accepted": 40, "errors": []})
        # Client errors are JSON 4xx naming the field, never a 500.
        status, body = await post({"request_id": "z", "label": 3})
        assert (status, body["field"]) == (422, "label")
        status, body = await post({"request_id": "z", "label": 1, "observed_at": "soon"})
        assert (status, body["field"]) == (422, "observed_at")
        status, body = await post(b"{not json")
        assert status == 400
        status, body = await post({"feedback": []})
        assert (status, body["field"]) == (422, "feedback")

        stored = await feedback_rows(dsn, f"{run}-", has(set(labels)))
        assert {r: stored[r] for r in labels} == labels

        # Again, after they are stored: 20 with the same label, 10 with the other one.
        repeats = list(labels)[:30]
        for n, request_id in enumerate(repeats):
            label = labels[request_id] if n < 20 else 1 - labels[request_id]
            value = {"request_id": request_id, "label": label}
            if n % 2:
                await send(producer, feedback_topic, value, request_id)
            else:
                assert (await post(value))[0] == 202
        await producer.flush()
        duplicates = await metric_reaches(base, "phoenix_feedback_duplicates_total", 30)
        assert duplicates == 30
        assert await metric_value(base, "phoenix_feedback_conflicts_total") == 10
        assert await metric_value(base, "phoenix_feedback_orphans_total") == len(late) + len(ghosts)
        assert await metric_value(base, "phoenix_feedback_rows_total") == len(labels) + len(ghosts)
        stored = await feedback_rows(dsn, f"{run}-", lambda found: True)
        assert {r: stored[r] for r in labels} == labels  # the first label won
        assert len(stored) == len(labels) + len(ghosts)  # duplicates not doubled

        # Bad feedback was dead-lettered, naming the field, while the good flowed.
        def all_bad(letters: list[dict[str, Any]]) -> bool:
            return set(bad) <= {base64.b64decode(str(d["original_value"])) for d in letters}

        letters = await consume_json(
            settings.kafka_url, settings.topic("dead-letters"), until=all_bad
        )
        ours = {
            base64.b64decode(str(d["original_value"])): (d["error_kind"], d["field"])
            for d in letters
            if d["source_topic"] == feedback_topic
        }
        assert [ours[raw] for raw in bad] == [
            ("invalid_json", None),
            ("invalid_feedback", "label"),
            ("invalid_feedback", "request_id"),
            ("invalid_feedback", "colour"),
        ]

        # The evaluation endpoint equals sklearn on the joined rows of the whole database
        # (other test modules may have stored predictions, but no feedback).
        async with http.get(f"{base}/v1/models/credit-risk/evaluation") as response:
            assert response.status == 200
            report = orjson.loads(await response.read())
        async with http.get(f"{base}/v1/models/no-such-model/evaluation") as response:
            assert response.status == 404
            assert (await response.json())["field"] == "model"

    connection = await asyncpg.connect(dsn)
    try:
        joined = await connection.fetch(
            "SELECT p.request_id, p.version, p.variant, p.score, p.label, p.predicted_at, "
            "f.label AS actual FROM predictions p JOIN feedback f USING (request_id) "
            "WHERE p.model = 'credit-risk'"
        )
    finally:
        await connection.close()
    truth = {r["request_id"]: int(r["actual"]) for r in joined}
    assert set(labels) <= set(truth)  # every label found its prediction, late ones too
    want = _reference([dict(r) for r in joined], truth, settings.evaluation_window)
    assert report["model"] == "credit-risk" and report["window"] == settings.evaluation_window
    assert report["label_sources"] == ["http", "kafka"]
    got = {(v["version"], v["variant"]): v for v in report["variants"]}
    # Other modules' scenarios (rollout, drift) label their own traffic in this database
    # too, with other versions and shadows: the served variants of this worker's
    # deployment are compared, and every served variant the reference knows must match.
    mine = {("1", "champion"), ("2", "challenger")}
    assert mine <= set(got) and mine <= set(want)
    for key in set(want) & set(got):
        _assert_matches(got[key], want[key])
    assert any(v["auc"] is not None for v in got.values())
    for (version, variant), values in got.items():
        gauge = await metric_value(
            base, "phoenix_model_accuracy", model="credit-risk", version=version, variant=variant
        )
        assert gauge == pytest.approx(values["accuracy"])

    # The periodic evaluation stores the same numbers in PostgreSQL.
    expected_n = {key: values["n"] for key, values in got.items()}

    async def stored_evaluation() -> dict[tuple[str, str], int]:
        connection = await asyncpg.connect(dsn)
        try:
            deadline = time.monotonic() + 30
            while True:
                rows = await connection.fetch(
                    "SELECT version, variant, n FROM evaluations WHERE model = 'credit-risk' "
                    "AND evaluated_at = (SELECT max(evaluated_at) FROM evaluations "
                    "WHERE model = 'credit-risk')"
                )
                found = {(r["version"], r["variant"]): int(r["n"]) for r in rows}
                if found == expected_n or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(POLL_S)
        finally:
            await connection.close()

    assert await stored_evaluation() == expected_n
