"""A corpus of hostile records through a real worker: every one dead-lettered, none parks.

Good requests share one partition with the hostile records (one key), so every good
request after a hostile one shows that the partition went on. A model whose ONNX graph
fails at run time on one feature value stands for a bug nobody foresaw: the failure
policy must isolate that request and score its batch mates.
"""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import onnx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from onnx import TensorProto, helper

from phoenix_stream.embedded import ServiceAddresses
from phoenix_stream.testing import consume_json, covers, prediction_rows
from phoenix_stream.tools.worker_process import WorkerProcess

FRAGILE = "fragile"
MAGIC = 666.0  # the fragile model fails on a batch holding this value
MAX_RECORD_BYTES = 300_000
DEAD_LETTER_MAX_BYTES = 4096
KEY = b"one-partition"


def build_fragile_model(models_dir: Path, target: Path) -> None:
    """credit-risk v2 whose graph raises in ONNX Runtime when any input equals MAGIC.

    Range(0, 1, delta) with delta = 0 is an error at run time; delta is 0 exactly when
    MAGIC is among the inputs. The added term is 0 otherwise, so scores are unchanged.
    """
    source = models_dir / "credit-risk" / "2"
    folder = target / FRAGILE / "1"
    folder.mkdir(parents=True)
    manifest = orjson.loads((source / "manifest.json").read_bytes())
    manifest["name"], manifest["version"] = FRAGILE, "1"
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))
    model = onnx.load(str(source / "model.onnx"))
    graph = model.graph
    graph.initializer.extend(
        [
            helper.make_tensor("magic", TensorProto.FLOAT, [], [MAGIC]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Equal", ["input", "magic"], ["is_magic"]),
            helper.make_node("Cast", ["is_magic"], ["magic_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMax", ["magic_f"], ["any_magic"], keepdims=0),
            helper.make_node("Sub", ["one", "any_magic"], ["delta"]),
            helper.make_node("Range", ["zero", "one", "delta"], ["steps"]),
            helper.make_node("ReduceSum", ["steps"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["probabilities", "nothing"], ["probabilities_checked"]),
        ]
    )
    for output in graph.output:
        if output.name == "probabilities":
            output.name = "probabilities_checked"
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))


def good(run: str, i: int, **extra: Any) -> dict[str, Any]:
    return {"request_id": f"{run}-{i}", "entity_id": f"c{i % 2000:06d}", **extra}


def hostile_corpus(run: str) -> list[tuple[str, bytes | None, bytes]]:
    """(name, value, key) of records that must each end as dead letters."""
    entity = b'"entity_id": "c000001"'
    deep = b'{"request_id": "d", ' + entity + b', "features": ' + b"[" * 50_000 + b"]" * 50_000
    surrogate = b'{"request_id": "s", "entity_id": "\\ud800"}'
    corpus: list[tuple[str, bytes | None, bytes]] = [
        ("deep nesting", deep + b"}", KEY),
        ("400-digit integer", b'{"request_id": "i", ' + entity + b', "features": '
         b'{"credit_amount": ' + b"9" * 400 + b"}}", KEY),
        ("beyond float32", b'{"request_id": "f", ' + entity + b', "features": '
         b'{"credit_amount": 1e39}}', KEY),
        ("NaN literal", b'{"request_id": "n", ' + entity + b', "features": '
         b'{"credit_amount": NaN}}', KEY),
        ("Infinity literal", b'{"request_id": "n2", ' + entity + b', "features": '
         b'{"credit_amount": -Infinity}}', KEY),
        ("invalid UTF-8", b'{"request_id": "u", "entity_id": "\xff\xfe"}', KEY),
        ("lone surrogate", surrogate, KEY),
        ("id as list", b'{"request_id": [1, 2], "entity_id": "c1"}', KEY),
        ("id as object", b'{"request_id": {"a": 1}, "entity_id": "c1"}', KEY),
        ("id as bool", b'{"request_id": true, "entity_id": "c1"}', KEY),
        ("id as float", b'{"request_id": 1.5, "entity_id": "c1"}', KEY),
        ("id beyond 64 bits", b'{"request_id": ' + b"1" * 30 + b', "entity_id": "c1"}', KEY),
        ("enormous entity id", b'{"request_id": "e", "entity_id": "' + b"x" * 250_000 + b'"}', KEY),
        ("enormous feature name", b'{"request_id": "fn", ' + entity + b', "features": {"'
         + b"y" * 200_000 + b'": 1}}', KEY),
        ("over the size limit", b'{"request_id": "big", "pad": "' + b"z" * 400_000 + b'"}', KEY),
        ("empty value", b"", KEY),
        ("null value", None, KEY),
        ("a number", b"123", KEY),
        ("a string", b'"request"', KEY),
        ("JSON null", b"null", KEY),
        ("empty batch", b"[]", KEY),
        ("unknown model", b'{"request_id": "m", "entity_id": "c1", "model": "nope"}', KEY),
        ("unknown field", b'{"request_id": "x", "entity_id": "c1", "colour": 1}', KEY),
        ("truncated JSON", b'{"request_id": "t", "entity_id": ', KEY),
        (
            "bug in the model",
            orjson.dumps(good(run, 90_002, model=FRAGILE, features={"credit_amount": MAGIC})),
            KEY,
        ),
    ]  # fmt: skip
    return corpus


@pytest.fixture(scope="module")
async def worker(
    worker_factory: Any, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> WorkerProcess:
    registry = tmp_path_factory.mktemp("hostile-models")
    shutil.copytree(models_dir / "credit-risk", registry / "credit-risk")
    build_fragile_model(models_dir, registry)
    started: WorkerProcess = await worker_factory.start(
        models_dir=registry,
        max_record_bytes=MAX_RECORD_BYTES,
        dead_letter_max_bytes=DEAD_LETTER_MAX_BYTES,
        topic_partitions=1,
    )
    return started


async def test_hostile_records_are_dead_lettered_while_good_ones_flow(
    worker: WorkerProcess, services: ServiceAddresses
) -> None:
    settings = worker.settings
    run = uuid.uuid4().hex[:8]
    topic = settings.topic("requests")
    corpus = hostile_corpus(run)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        max_request_size=4 * 1_048_576,
    )
    await producer.start()
    good_ids: list[str] = []
    hostile_offsets: dict[tuple[int, int], str] = {}
    try:
        n = 0
        for name, value, key in corpus:
            for _ in range(3):
                request = good(run, n, sent_at=time.time())
                await producer.send_and_wait(topic, orjson.dumps(request), key=KEY)
                good_ids.append(request["request_id"])
                n += 1
            sent = await producer.send_and_wait(topic, value, key=key)
            hostile_offsets[(sent.partition, sent.offset)] = name
        # A batch record mixing good requests, hostile items and a fragile-model request.
        batch = [
            good(run, 80_000),
            {"request_id": f"{run}-80001", "entity_id": [1]},
            good(run, 80_002, model=FRAGILE),
            good(run, 80_003, features={"credit_amount": 1e39}),
            good(run, 80_004),
        ]
        await producer.send_and_wait(topic, orjson.dumps(batch), key=KEY)
        good_ids += [f"{run}-80000", f"{run}-80002", f"{run}-80004", f"{run}-90001"]
        # A good request under a 100 kB key: predicted like any other.
        huge_key = good(run, 90_001)
        await producer.send_and_wait(topic, orjson.dumps(huge_key), key=b"k" * 100_000)
        sentinel = good(run, 99_999)
        await producer.send_and_wait(topic, orjson.dumps(sentinel), key=KEY)
        good_ids.append(sentinel["request_id"])
    finally:
        await producer.stop()

    predictions = await consume_json(
        settings.kafka_url, settings.topic("predictions"), until=covers(good_ids), timeout_s=90
    )
    predicted = {str(p["request_id"]) for p in predictions}
    assert set(good_ids) <= predicted, worker.log_tail()
    # Only good requests were predicted; the fragile model's non-magic requests among them.
    assert predicted <= set(good_ids)

    def dead_offsets(letters: list[dict[str, object]]) -> set[object]:
        return {(d["partition"], d["offset"]) for d in letters}

    dead = await consume_json(
        settings.kafka_url,
        settings.topic("dead-letters"),
        until=lambda letters: set(hostile_offsets) <= dead_offsets(letters),
        timeout_s=60,
    )
    missing = {o: hostile_offsets[o] for o in set(hostile_offsets) - dead_offsets(dead)}
    assert not missing, f"not dead-lettered: {missing}"
    by_offset = {(d["partition"], d["offset"]): d for d in dead if d["batch_index"] is None}
    bug = by_offset[next(o for o, name in hostile_offsets.items() if name == "bug in the model")]
    assert bug["error_kind"] == "processing_error"
    assert "InferenceError" in str(bug["error"])
    too_big = by_offset[next(o for o, n in hostile_offsets.items() if n == "over the size limit")]
    assert too_big["error_kind"] == "too_large" and too_big["truncated"] is True
    assert len(base64.b64decode(str(too_big["original_value"]))) == DEAD_LETTER_MAX_BYTES
    assert int(str(too_big["original_size"])) > MAX_RECORD_BYTES
    for letter in dead:
        assert letter["error_kind"] and letter["error"]
        assert len(orjson.dumps(letter)) < 64_000  # always far below a broker's 1 MiB
    batch_items = sorted(
        (d["batch_index"], d["error_kind"]) for d in dead if d["batch_index"] is not None
    )
    assert batch_items == [
        (1, "invalid_request"),
        (2, "processing_error"),
        (3, "invalid_request"),
    ] or batch_items == [(1, "invalid_request"), (3, "invalid_request")]

    rows = await prediction_rows(
        services.postgres_dsn, f"{run}-", until=lambda r: len(r) >= len(good_ids), timeout_s=60
    )
    assert sorted(r["request_id"] for r in rows) == sorted(good_ids)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{worker.base_url}/health") as response,
    ):
        assert response.status == 200
    assert worker.process is not None and worker.process.poll() is None
