"""Every dashboard panel and every alert rule, on a real Prometheus scraping two workers.

Two workers of one group serve an A/B deployment on Apache Kafka (whose end offsets are
trusted, so consumer lag is exported) under requests, HTTP calls, labels and a malformed
record; Debian's ``prometheus`` scrapes them every second with the repository's rule
files. Then the events that some queries need are driven: drifted traffic raises a drift
alarm (which asks for a retraining), an administrator puts the challenger in shadow and
rolls it back, and a worker stops. Every panel's query must return series, every rule
must evaluate without error over metrics the workers export, and the drift, rollout and
worker-down alerts must show in ``/api/v1/alerts``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from phoenix_stream.settings import AGENTS
from phoenix_stream.tools.dashboards import annotation_queries, panel_queries
from phoenix_stream.tools.prometheus import PrometheusServer, Series
from phoenix_stream.tools.worker_process import WorkerProcess
from phoenix_stream.training.datagen import (
    REQUEST_FEATURES,
    entity_id_for,
    sample_request_features,
)

pytestmark = pytest.mark.brokers("kafka")

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
MODEL = "credit-risk"
TOKEN = uuid.uuid4().hex
WORKERS = {
    "drift_window_s": 2.0,
    "drift_min_window": 100,
    "agents": AGENTS,  # drift and retrain too
    "challenger_version": "2",
    "strategy": "ab",
    "challenger_share": 0.5,
    "evaluation_interval_s": 2.0,
    "admin_token": TOKEN,
    "trust_kafka_feedback": True,
    # A drift alarm asks for a retraining that finds too few rows (an outcome, quickly).
    "auto_retrain": True,
    "retrain_min_rows": 1_000_000,
    "retrain_max_rows": 1_000_000,
    "retrain_wait_s": 0,
}
REQUESTS_PER_TICK = 30
TICK_S = 0.2  # about 150 requests/s
FEEDBACK_DELAY_S = 1.0  # after the prediction is stored, mostly: labels join it
UNREGISTERED = "no-such-model-x1"
STRANGE_PATH = "/no-such-path-x1"
TIMEOUT_S = 180.0  # generous for a busy 2-core machine; every wait returns once met


class Traffic:
    """Requests of seeded entities and, a second later, a label for each, until stopped."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, feedback_topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.feedback_topic = feedback_topic
        self.shift = 0.0
        self.sent = 0
        self._run = uuid.uuid4().hex[:8]
        self._rng = np.random.default_rng(7)

    async def run(self) -> None:
        due: list[tuple[float, list[str]]] = []
        while True:
            loans = sample_request_features(self._rng, REQUESTS_PER_TICK, self.shift)
            ids = []
            for j in range(REQUESTS_PER_TICK):
                entity = entity_id_for(int(self._rng.integers(0, 2000)))
                request_id = f"{self._run}-{self.sent}"
                request = {
                    "request_id": request_id,
                    "entity_id": entity,
                    "features": {name: float(loans[name][j]) for name in REQUEST_FEATURES},
                    "sent_at": time.time(),
                }
                self.sent += 1
                ids.append(request_id)
                await self.producer.send(self.topic, orjson.dumps(request), key=entity.encode())
            due.append((time.monotonic() + FEEDBACK_DELAY_S, ids))
            while due and due[0][0] <= time.monotonic():
                for request_id in due.pop(0)[1]:
                    label = {"request_id": request_id, "label": int(self._rng.integers(0, 2))}
                    await self.producer.send(
                        self.feedback_topic, orjson.dumps(label), key=request_id.encode()
                    )
            await asyncio.sleep(TICK_S)


@asynccontextmanager
async def flowing(producer: AIOKafkaProducer, worker: WorkerProcess) -> AsyncIterator[Traffic]:
    settings = worker.settings
    stream = Traffic(producer, settings.topic("requests"), settings.topic("feedback"))
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await producer.flush()


async def until(
    what: str, check: Callable[[], Awaitable[Any]], timeout_s: float = TIMEOUT_S
) -> Any:
    """``check()``'s first truthy answer, polled; AssertionError naming ``what`` at the end."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last: {last!r})")


async def http_calls(worker: WorkerProcess) -> None:
    """Predictions through the HTTP view, and one refused call (a 4xx of its own route)."""
    item = {"entity_id": "c000042", "features": {REQUEST_FEATURES[0]: 1.0}}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(5):
            async with session.post(f"{worker.base_url}/v1/predict", json=item) as response:
                assert response.status == 200, await response.text()
        async with session.post(f"{worker.base_url}/v1/predict", json={"x": 1}) as response:
            assert response.status == 422  # the body names no entity_id
        # What a caller chooses must not become a label: a model that is not registered,
        # a path no route takes.
        unknown = {**item, "model": UNREGISTERED}
        async with session.post(f"{worker.base_url}/v1/predict", json=unknown) as response:
            assert response.status == 404, await response.text()
        async with session.get(f"{worker.base_url}{STRANGE_PATH}") as response:
            assert response.status == 404


async def admin_call(worker: WorkerProcess, method: str, path: str, body: dict[str, Any]) -> None:
    """An administrator's call of ``worker``'s deployments API; it must succeed."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{worker.base_url}/v1/deployments/{MODEL}{path}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()


def metric_selectors(expr: str) -> set[str]:
    """The exported metric names an expression reads (``up`` and ``phoenix_*``)."""
    names = set(re.findall(r"\bphoenix_[a-z_]+", expr))
    if re.search(r"\bup\b", expr):
        names.add("up")
    return names


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


async def alert_states(prometheus: PrometheusServer) -> dict[str, set[str]]:
    """Alert name -> the states (pending, firing) its alerts are in now."""
    states: dict[str, set[str]] = {}
    for alert in await prometheus.alerts():
        states.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
    return states


async def empty_queries(prometheus: PrometheusServer, queries: list[tuple[str, str]]) -> list[str]:
    """The queries (name, expr) that return no series now, with their names."""
    empty = []
    for name, expr in queries:
        found: list[Series] = await prometheus.query(expr)
        if not found:
            empty.append(f"{name}: {expr}")
    return empty


async def still_empty(
    prometheus: PrometheusServer, queries: list[tuple[str, str]], timeout_s: float
) -> list[str]:
    """The queries still returning no series after up to ``timeout_s`` of retries.

    A rate over a minute needs two scrapes of a series: the last ones to appear get time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        empty = await empty_queries(prometheus, queries)
        if not empty or time.monotonic() > deadline:
            return empty
        await asyncio.sleep(1.0)


async def test_every_panel_and_alert_against_a_real_prometheus(
    worker_factory: Any, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    assert RULE_FILES, "no alert rule files under deploy/prometheus/rules"
    first: WorkerProcess = await worker_factory.start(**WORKERS)
    second: WorkerProcess = await worker_factory.start(
        **WORKERS, app_id=first.settings.app_id, topic_prefix=first.settings.topic_prefix
    )
    targets = [f"127.0.0.1:{w.settings.web_port}" for w in (first, second)]
    prometheus = PrometheusServer(tmp_path / "prometheus", targets, RULE_FILES)
    await prometheus.start()
    try:
        async with flowing(producer, first) as traffic:
            await _drive(prometheus, first, second, traffic)
            panels = [(f"{q.dashboard} / {q.panel} [{q.ref_id}]", q.expr) for q in panel_queries()]
            empty_panels = await still_empty(prometheus, panels, timeout_s=60.0)
            annotations = [(f"{a.dashboard} / {a.name}", a.expr) for a in annotation_queries()]
            empty_annotations = await empty_queries(prometheus, annotations)
            selectors = sorted(
                {n for rule in alert_rules() for n in metric_selectors(rule["expr"])}
            )
            unexported = await empty_queries(prometheus, [(n, f"count({n})") for n in selectors])
            rules = await prometheus.api("rules")
            caller_labels = await prometheus.query(
                f'{{model="{UNREGISTERED}"}} or {{route=~".*{STRANGE_PATH}.*"}}'
            )
            unmatched = await prometheus.query(
                'phoenix_http_request_duration_seconds_count{route="unmatched", status="404"}'
            )
        # A stopped worker: its target goes down and the worker-down alert becomes pending.
        second.stop()
        states = await until(
            "PhoenixWorkerDown pending or firing",
            lambda: _with_alert(prometheus, "PhoenixWorkerDown"),
        )
    finally:
        prometheus.stop()

    assert not empty_panels, "panels without series:\n" + "\n".join(empty_panels)
    assert not empty_annotations, "annotations without series:\n" + "\n".join(empty_annotations)
    assert not unexported, f"alert rules read metrics no worker exports: {unexported}"
    assert not caller_labels, caller_labels
    assert unmatched, "the unmatched path was not counted under route=unmatched"
    evaluated = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in evaluated} >= {rule["alert"] for rule in alert_rules()}
    broken = [(rule["name"], rule.get("lastError")) for rule in evaluated if rule["health"] != "ok"]
    assert not broken, broken
    assert states["PhoenixWorkerDown"] & {"pending", "firing"}


async def _drive(
    prometheus: PrometheusServer,
    first: WorkerProcess,
    second: WorkerProcess,
    traffic: Traffic,
) -> None:
    """Traffic on both workers, then a drift alarm and a rollback, each seen by Prometheus."""
    for worker in (first, second):
        await http_calls(worker)
    settings = first.settings
    await producer_send_raw(traffic.producer, settings.topic("requests"), b"{not json")
    await until("both targets up", lambda: _all_up(prometheus, expected=2), timeout_s=60.0)
    await until(
        "predictions of both variants",
        lambda: _series_count(
            prometheus,
            'sum by (variant) (rate(phoenix_predictions_total{job="phoenix-stream"}[1m]))',
        ),
    )
    await until(
        "online metrics of both variants",
        lambda: _series_count(prometheus, "phoenix_model_accuracy", at_least=2),
    )
    traffic.shift = 1.0  # every request feature moves one standard deviation
    await until("PhoenixDriftAlarm firing", lambda: _firing(prometheus, "PhoenixDriftAlarm"))
    await until(
        "a retraining run with an outcome",
        lambda: _series_count(prometheus, "phoenix_retrain_duration_seconds_count > 0"),
    )
    # The challenger in shadow (a deployment change), then rolled back by an administrator.
    shadow = {"champion": "1", "challenger": "2", "strategy": "shadow", "reason": "test"}
    await admin_call(first, "PUT", "", shadow)
    await until(
        "shadow predictions",
        lambda: _series_count(prometheus, "rate(phoenix_shadow_predictions_total[1m]) > 0"),
    )
    await admin_call(first, "POST", "/rollback", {"reason": "observability test"})
    await until(
        "PhoenixRolloutDecided firing", lambda: _firing(prometheus, "PhoenixRolloutDecided")
    )


async def producer_send_raw(producer: AIOKafkaProducer, topic: str, value: bytes) -> None:
    await producer.send_and_wait(topic, value, key=b"bad")


async def _all_up(prometheus: PrometheusServer, expected: int) -> bool:
    health = await prometheus.targets_up()
    return len(health) == expected and set(health.values()) == {"up"}


async def _series_count(prometheus: PrometheusServer, expr: str, at_least: int = 1) -> bool:
    return len(await prometheus.query(expr)) >= at_least


async def _firing(prometheus: PrometheusServer, alert: str) -> bool:
    return "firing" in (await alert_states(prometheus)).get(alert, set())


async def _with_alert(prometheus: PrometheusServer, alert: str) -> dict[str, set[str]] | None:
    states = await alert_states(prometheus)
    return states if alert in states else None
