"""``phoenix-stream simulate --scenario rollout``: a challenger's whole life, measured.

On running services: two workers with the rollout controller on, traffic at a steady
rate, and for every request its true label (the simulator's known rule) sent as feedback
after a delay. The challenger (truly better, equal or worse: ``scenarios.models``) is
deployed as a shadow with canary steps; on the way the operator re-applies the deployment
under load; then nobody acts: the controller ramps, promotes, rolls back or keeps the
champion. The result says what was decided, on how many labels, how long it took, every
deployment step, how many requests failed, and how fast each change reached both workers.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from aiokafka import AIOKafkaProducer

from phoenix_stream.lifecycle.deployment_record import DEFAULT_STEPS
from phoenix_stream.settings import Settings
from phoenix_stream.tools.scenarios import harness
from phoenix_stream.tools.scenarios.models import (
    CHALLENGER,
    CHAMPION,
    Challenger,
    build_registry,
)
from phoenix_stream.tools.worker_process import WorkerProcess
from phoenix_stream.training.datagen import (
    REQUEST_FEATURES,
    default_probability,
    entity_id_for,
    profiles,
    sample_labels,
    sample_request_features,
)
from phoenix_stream.training.seeding import seed_feature_store


@dataclass(frozen=True)
class RolloutConfig:
    """The scenario's knobs: requests/s, seconds, labelled requests per canary step."""

    challenger: Challenger
    rate: float = 400.0
    entities: int = 20_000
    feedback_delay_s: float = 2.0
    timeout_s: float = 540.0  # the longest wait for a decision
    steps: tuple[float, ...] = DEFAULT_STEPS
    step_labels: int = 200
    workers: int = 2
    seed: int = 1


@dataclass
class Observed:
    """What the scenario saw: predictions, true labels, deployment generations."""

    produced: int = 0  # requests the broker acknowledged
    unsent: int = 0  # requests the broker refused (the producer's error, not the pipeline's)
    labels: dict[str, int] = field(default_factory=dict)
    predicted: set[str] = field(default_factory=set)
    placed: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> partition, offset
    dead_lettered: dict[str, str] = field(default_factory=dict)  # request id -> kind: reason
    served: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # correct/total
    seen_at: dict[int, list[float]] = field(default_factory=dict)  # generation -> per worker
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # generation -> record


async def run_rollout(settings: Settings, config: RolloutConfig, work_dir: Path) -> dict[str, Any]:
    """Run the scenario against ``settings``' services; the result (JSON types)."""
    registry = work_dir / f"models-{config.challenger}"
    await asyncio.to_thread(build_registry, registry, config.challenger)
    await seed_feature_store(settings.redis_url, config.entities)
    base, tag = harness.scenario_settings(
        settings,
        "rollout",
        registry=registry,
        work_dir=work_dir,
        champion=CHAMPION,
        step_labels=config.step_labels,
        agents=("inference", "sink", "feedback", "deployments"),
    )
    seen = Observed()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    async with harness.running_workers(base, config.workers, work_dir, tag) as workers:
        try:
            tasks = [
                asyncio.create_task(_traffic(base, config, seen, stop, tag)),
                asyncio.create_task(harness.follow_topic(base, "predictions", _counter(seen))),
                asyncio.create_task(harness.follow_topic(base, "dead-letters", _noter(seen))),
                asyncio.create_task(_watch_generations(workers, seen)),
            ]
            return await _drive(workers, config, seen, stop, tasks)
        finally:
            stop.set()  # the traffic ends by itself (flushing); the watchers are cancelled
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _drive(
    workers: list[WorkerProcess],
    config: RolloutConfig,
    seen: Observed,
    stop: asyncio.Event,
    watchers: list[asyncio.Task[None]],
) -> dict[str, Any]:
    """The operator's part, then waiting for the controller's decision."""
    admin = workers[0].base_url
    champion = await harness.put_deployment(
        admin, {"champion": CHAMPION, "reason": "scenario start"}
    )
    await _until_everywhere(seen, champion, len(workers))
    await asyncio.sleep(3.0)  # traffic with the champion alone first
    shadow_change = {
        "champion": CHAMPION,
        "challenger": CHALLENGER,
        "strategy": "shadow",
        "steps": list(config.steps),
        "reason": f"try the {config.challenger} challenger",
    }
    shadow = await harness.put_deployment(admin, shadow_change)
    started = time.monotonic()
    shadow_at = float(shadow["decided_at"])
    await asyncio.sleep(2.0)
    # An operator re-applies the same deployment under load: the rollout must go on.
    reapplied = await harness.put_deployment(
        workers[-1].base_url, {**shadow_change, "reason": "re-applied"}
    )
    decision = await _wait_decision(seen, int(reapplied["generation"]), config.timeout_s)
    seconds_to_decision = time.monotonic() - started
    stop.set()
    await _drain(seen)
    for task in watchers:  # a bookkeeping task that died would read as lost requests
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError("a scenario task failed") from task.exception()
    return _result(config, seen, decision, shadow_at, seconds_to_decision, len(workers))


async def _until_everywhere(seen: Observed, record: dict[str, Any], workers: int) -> None:
    generation = int(record["generation"])
    await harness.poll(lambda: len(seen.seen_at.get(generation, [])) >= workers, 60.0)


async def _wait_decision(seen: Observed, after: int, timeout_s: float) -> dict[str, Any] | None:
    """The first record after ``after`` with no challenger: the controller's decision."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for generation in sorted(seen.records):
            record = seen.records[generation]
            if generation > after and record["challenger"] is None:
                return record
        await asyncio.sleep(0.2)
    return None


async def _traffic(
    settings: Settings, config: RolloutConfig, seen: Observed, stop: asyncio.Event, tag: str
) -> None:
    """Requests at ``config.rate``; each one's true label as feedback after the delay.

    Request ids carry the run's ``tag``: runs sharing a database must not share ids (the
    sink keeps the first prediction of an id, the feedback store its first label).
    """
    rng = np.random.default_rng(config.seed)

    async def send(producer: AIOKafkaProducer, first: int, n: int) -> harness.Labelled:
        index = rng.integers(0, config.entities, size=n)
        ids = [entity_id_for(int(i)) for i in index]
        loans = sample_request_features(rng, n)
        X = np.column_stack([profiles(ids), *(loans[f] for f in REQUEST_FEATURES)])
        labels = sample_labels(default_probability(X), rng).tolist()
        batch: harness.Labelled = []
        sends: list[asyncio.Future[Any]] = []
        for j in range(n):
            request_id = f"{tag}-r{first + j}"
            body = harness.request_json(request_id, ids[j], loans, j, time.time())
            sends.append(await producer.send(settings.topic("requests"), body, key=ids[j].encode()))
            seen.labels[request_id] = labels[j]
            batch.append((request_id, labels[j]))
        # Count only what the broker acknowledged: a refused send is not a lost request.
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
        for (request_id, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                del seen.labels[request_id]
                seen.unsent += 1
            else:
                seen.placed[request_id] = (outcome.partition, outcome.offset)
        seen.produced = len(seen.labels)
        return batch

    await harness.paced_traffic(settings, config.rate, config.feedback_delay_s, stop, send)


def _counter(seen: Observed) -> Callable[[dict[str, Any]], None]:
    """Counts every served prediction: which request, which variant, right or wrong."""

    def count(p: dict[str, Any]) -> None:
        request_id = str(p.get("request_id"))
        if request_id in seen.predicted:
            return  # at-least-once: a redelivered request counts once
        seen.predicted.add(request_id)
        tally = seen.served.setdefault((str(p["variant"]), str(p["version"])), [0, 0])
        tally[0] += int(p["label"] == seen.labels.get(request_id))
        tally[1] += 1

    return count


def _noter(seen: Observed) -> Callable[[dict[str, Any]], None]:
    """Notes every dead-lettered request of this run, with why."""

    def note(letter: dict[str, Any]) -> None:
        try:
            original = orjson.loads(base64.b64decode(str(letter.get("original_value", ""))))
        except (ValueError, orjson.JSONDecodeError):
            original = None
        request_id = str(original.get("request_id")) if isinstance(original, dict) else "?"
        seen.dead_lettered[request_id] = f"{letter.get('error_kind')}: {letter.get('error')}"

    return note


async def _watch_generations(workers: list[WorkerProcess], seen: Observed) -> None:
    """When each worker first serves each generation (polled every 20 ms, until cancelled)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            for worker in workers:
                try:
                    async with session.get(
                        f"{worker.base_url}/v1/deployments/{harness.MODEL}"
                    ) as response:
                        body = orjson.loads(await response.read())
                except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
                    continue
                record = body.get("serving") or {}
                generation = int(record.get("generation", 0))
                if generation and worker.base_url not in seen.records.get(generation, {}).get(
                    "_workers", ()
                ):
                    stored = seen.records.setdefault(generation, {**record, "_workers": []})
                    stored["_workers"].append(worker.base_url)
                    seen.seen_at.setdefault(generation, []).append(time.time())
            await asyncio.sleep(0.02)


async def _drain(seen: Observed, timeout_s: float = 60.0) -> None:
    """Until every produced request was predicted (or the timeout)."""
    await harness.poll(lambda: seen.labels.keys() <= seen.predicted, timeout_s, 0.2)


def _result(
    config: RolloutConfig,
    seen: Observed,
    decision: dict[str, Any] | None,
    shadow_at: float,
    seconds_to_decision: float,
    workers: int,
) -> dict[str, Any]:
    evidence: dict[str, Any] = (decision or {}).get("evidence") or {}
    if decision is None:
        outcome = "none"
    elif decision["champion"] == CHALLENGER:
        outcome = "promote"
    else:
        outcome = str(evidence.get("decision", "rollback"))
    shadow = evidence.get("shadow", {})
    canary = evidence.get("canary", {})
    missing = seen.labels.keys() - seen.predicted
    propagation = [
        (max(times) - float(seen.records[g]["decided_at"])) * 1000.0
        for g, times in seen.seen_at.items()
        if len(times) >= workers and g in seen.records
    ]
    steps = [
        {
            "generation": g,
            "strategy": r["strategy"],
            "share": r["share"],
            "actor": r["actor"],
            "reason": r["reason"],
            "seconds": round(float(r["decided_at"]) - shadow_at, 1),
        }
        for g, r in sorted(seen.records.items())
    ]
    return {
        "challenger": config.challenger,
        "decision": outcome,
        "labelled_per_variant": {
            "shadow_pairs": shadow.get("labelled_champion"),
            "canary_champion": canary.get("labelled_champion"),
            "canary_challenger": canary.get("labelled_challenger"),
        },
        "champion_metric": shadow.get("champion_metric"),
        "challenger_metric": shadow.get("challenger_metric"),
        "statistic": shadow.get("statistic"),
        "bound": shadow.get("bound"),
        "seconds_to_decision": round(seconds_to_decision, 1),
        "steps": steps,
        "failed_requests": len(missing),
        "missing_sample": sorted(missing)[:10],
        "missing_by_partition": _by_partition(missing, seen.placed),
        "dead_letters": len(seen.dead_lettered),
        "dead_letter_sample": dict(sorted(seen.dead_lettered.items())[:5]),
        "requests": seen.produced,
        "unsent_requests": seen.unsent,
        "served_accuracy": {
            f"{variant} {version}": round(right / total, 4)
            for (variant, version), (right, total) in sorted(seen.served.items())
            if total
        },
        "deploy_propagation_ms": {
            "max": round(max(propagation), 1) if propagation else None,
            "median": round(statistics.median(propagation), 1) if propagation else None,
            "changes": len(propagation),
        },
    }


def _by_partition(
    request_ids: set[str], placed: dict[str, tuple[int, int]]
) -> dict[str, list[int]]:
    """Where requests sat on ``requests``: partition -> [count, first offset, last offset]."""
    where: dict[str, list[int]] = {}
    for partition, offset in (placed[r] for r in request_ids if r in placed):
        entry = where.setdefault(str(partition), [0, offset, offset])
        entry[0] += 1
        entry[1], entry[2] = min(entry[1], offset), max(entry[2], offset)
    return where


def format_result(result: dict[str, Any]) -> str:
    """The result as a short table for the terminal."""
    lines = [
        f"challenger        {result['challenger']}",
        f"decision          {result['decision']}",
        f"champion / challenger accuracy (shadow pairs)  "
        f"{result['champion_metric']} / {result['challenger_metric']}",
        f"labelled          {result['labelled_per_variant']}",
        f"seconds to decide {result['seconds_to_decision']}",
        f"requests          {result['requests']}  failed {result['failed_requests']}",
        f"served accuracy   {result['served_accuracy']}",
        f"propagation ms    {result['deploy_propagation_ms']}",
        "steps:",
    ]
    lines += [
        f"  +{s['seconds']:>6}s gen {s['generation']} {s['strategy']:<7} "
        f"{s['share']:>5.0%} {s['actor']}: {s['reason']}"
        for s in result["steps"]
    ]
    return "\n".join(lines)


EXPECTED: dict[str, tuple[str, ...]] = {
    "better": ("promote",),
    "equal": ("keep", "rollback"),  # anything but a promotion
    "worse": ("rollback",),
}
MAX_SECONDS = 600.0


def check_targets(result: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets: the right decision, no failed request, within 10 minutes."""
    return {
        "decision": result["decision"] in EXPECTED[result["challenger"]],
        "no_failed_requests": result["failed_requests"] == 0 and result["unsent_requests"] == 0,
        "within_10_minutes": result["seconds_to_decision"] <= MAX_SECONDS,
    }


async def run_scenario(settings: Settings, config: RolloutConfig) -> dict[str, Any]:
    """The scenario on the embedded services (started here unless their URLs are set)."""
    work_dir = settings.state_dir / "scenario-rollout"
    result = await harness.in_services(
        settings, work_dir, lambda running: run_rollout(running, config, work_dir)
    )
    result["targets"] = check_targets(result)
    return result
