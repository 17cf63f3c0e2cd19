"""Every decoder of outside input, fuzzed at a higher budget than the unit properties.

Decoders: request records (single and batch; the HTTP views decode their bodies with the
same function), feedback (topic and HTTP), deployments, retrain requests, drift counts and
model manifests. Each gets arbitrary bytes, arbitrary JSON, and near-valid records (a
valid one with one field dropped, replaced or added). Properties: nothing but the
decoder's documented error escapes (ValidationError, or ModelLoadError for manifests),
every error names a field, and what is accepted decodes again to the same value.

Budget: the ``fuzz`` profile by default (the whole module in about a minute here);
``PHOENIX_FUZZ_PROFILE=fuzz-long`` for a longer run, ``fuzz-quick`` for a smoke run.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phoenix_stream.drift.counts import decode_counts
from phoenix_stream.exceptions import ModelLoadError, ValidationError
from phoenix_stream.lifecycle import deployment_record, retrain_request
from phoenix_stream.lifecycle.feedback import ParsedFeedback, RejectedFeedback, decode_feedback
from phoenix_stream.messages.requests import ParsedRequest, RejectedRequest, decode_record
from phoenix_stream.serving.manifest import MANIFEST_FILE, Manifest
from phoenix_stream.training.datagen import make_dataset
from phoenix_stream.training.train import train_version

_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,
}
settings.register_profile("fuzz-quick", max_examples=50, **_COMMON)
settings.register_profile("fuzz", max_examples=600, **_COMMON)
settings.register_profile("fuzz-long", max_examples=20_000, **_COMMON)
FUZZ = settings(settings.get_profile(os.environ.get("PHOENIX_FUZZ_PROFILE", "fuzz")))

NOW = 1_795_729_904.0
REQUEST_KINDS = {"invalid_json", "invalid_request", "too_large", "batch_too_large"}
FEEDBACK_KINDS = {"invalid_json", "invalid_feedback", "too_large", "batch_too_large"}

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)


def _dumps(value: Any) -> bytes:
    # The standard library writes NaN, Infinity and huge integers: inputs orjson refuses.
    import json

    return json.dumps(value, allow_nan=True).encode()


@st.composite
def near(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with one field dropped, replaced by any JSON, or one field added."""
    record = dict(valid)
    key = draw(st.sampled_from(sorted(record)))
    action = draw(st.sampled_from(["drop", "replace", "add"]))
    if action == "drop":
        del record[key]
    elif action == "replace":
        record[key] = draw(JSON)
    else:
        record[draw(st.text(max_size=8))] = draw(JSON)
    return record


def inputs(valid: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Bytes of any kind, any JSON, and near-valid records (alone and in lists)."""
    records = near(valid)
    return st.one_of(
        st.binary(max_size=512),
        JSON.map(_dumps),
        records.map(_dumps),
        st.lists(records | JSON, min_size=1, max_size=5).map(_dumps),
    )


# Requests: records on phoenix.requests and the bodies of POST /v1/predict[/batch].
REQUEST = {
    "request_id": "r-1",
    "entity_id": "c000042",
    "model": "credit-risk",
    "features": {"credit_amount": 12.5, "duration_months": 24},
    "sent_at": NOW,
}


def _decode_requests(raw: bytes, http: bool) -> list[ParsedRequest | RejectedRequest]:
    return decode_record(
        raw,
        default_model="credit-risk",
        max_bytes=4096,
        max_batch=4,
        require_request_id=not http,
        id_factory=(lambda: "generated") if http else None,
    )


def _request_json(parsed: ParsedRequest) -> dict[str, Any]:
    fields = {
        "request_id": parsed.request_id,
        "entity_id": parsed.entity_id,
        "model": parsed.model,
        "features": None if parsed.features is None else dict(parsed.features),
        "sent_at": parsed.sent_at,
    }
    return {name: value for name, value in fields.items() if value is not None}


@FUZZ
@given(inputs(REQUEST), st.booleans())
def test_request_records_decode_to_requests_or_named_rejections(raw: bytes, http: bool) -> None:
    decoded = _decode_requests(raw, http)
    assert decoded
    for item in decoded:
        if isinstance(item, RejectedRequest):
            assert item.kind in REQUEST_KINDS
            if item.kind == "invalid_request" and item.batch_index is not None:
                assert item.field is not None, item.error  # names its field (maybe "")
            continue
        again = _decode_requests(orjson.dumps(_request_json(item)), http)
        assert len(again) == 1 and isinstance(again[0], ParsedRequest)
        assert _request_json(again[0]) == _request_json(item)


# Feedback: records on phoenix.feedback and the bodies of POST /v1/feedback.
FEEDBACK = {"request_id": "r-1", "label": 1, "observed_at": NOW - 60}


@FUZZ
@given(inputs(FEEDBACK))
def test_feedback_decodes_to_labels_or_named_rejections(raw: bytes) -> None:
    decoded = decode_feedback(raw, now=NOW, max_bytes=4096, max_batch=4)
    assert decoded
    for item in decoded:
        if isinstance(item, RejectedFeedback):
            assert item.kind in FEEDBACK_KINDS
            if item.kind == "invalid_feedback" and item.batch_index is not None:
                assert item.field is not None, item.error
            continue
        assert isinstance(item, ParsedFeedback)
        [again] = decode_feedback(item.to_json(), now=NOW, max_bytes=4096, max_batch=4)
        assert isinstance(again, ParsedFeedback)
        assert (again.request_id, again.label, again.observed_at) == (
            item.request_id,
            item.label,
            item.observed_at,
        )


# Deployments: records on the compacted phoenix.deployments topic.
DEPLOYMENT = {
    "model": "credit-risk",
    "champion": "1",
    "challenger": "2",
    "strategy": "canary",
    "share": 0.05,
    "steps": [0.01, 0.05, 0.5],
    "step": 1,
    "generation": 5,
    "actor": "ops",
    "reason": "try v2",
    "decided_at": NOW,
    "evidence": {"n": 10},
}


@FUZZ
@given(inputs(DEPLOYMENT) | st.none())
# Found by this test in CI: an infinity in the evidence came back as null.
@example(b'{"model":"0","champion":"0","generation":1,"evidence":{"":Infinity}}')
def test_deployment_records_decode_or_name_the_field(raw: bytes | None) -> None:
    try:
        record = deployment_record.decode_record(raw)
    except ValidationError as exc:
        assert exc.field is not None  # "$" for the record, maybe "" (a key named so)
        return
    assert deployment_record.decode_record(record.encode()) == record


# Retrain requests: records on phoenix.retrain.
RETRAIN = {
    "model": "credit-risk",
    "reason": "drift in age",
    "requested_at": NOW,
    "actor": "drift",
    "trigger_id": "drift-1",
    "report": {"window": [1, 2]},
    "data_since": NOW - 3600,
}


@FUZZ
@given(inputs(RETRAIN) | st.none())
def test_retrain_requests_decode_or_name_the_field(raw: bytes | None) -> None:
    try:
        request = retrain_request.decode_request(raw)
    except ValidationError as exc:
        assert exc.field is not None  # "$" for the record, maybe "" (a key named so)
        return
    assert retrain_request.decode_request(request.encode()) == request


# Drift counts: records between the inference and drift-window agents.
COUNTS = {
    "model": "credit-risk",
    "version": "1",
    "counts": [[1, 0, 2], [0, 3, 0]],
    "n": 3,
    "at": NOW,
}


@FUZZ
@given(inputs(COUNTS) | st.none())
def test_drift_counts_decode_or_name_the_field(raw: bytes | None) -> None:
    try:
        counts = decode_counts(raw)
    except ValidationError as exc:
        assert exc.field is not None  # "$" for the record, maybe "" (a key named so)
        return
    again = decode_counts(counts.encode())
    assert (again.model, again.version, again.n, again.at) == (
        counts.model,
        counts.version,
        counts.n,
        counts.at,
    )
    assert np.array_equal(again.counts, counts.counts)


# Manifests: manifest.json of a model version given to `registry register`.
@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A valid manifest, as the registry writes it (a small logistic model)."""
    models = tmp_path_factory.mktemp("models")
    X, y = make_dataset(800, seed=3)
    train_version(models, "credit-risk", "1", X, y, "logistic_regression", seed=3)
    data: dict[str, Any] = orjson.loads((models / "credit-risk" / "1" / MANIFEST_FILE).read_bytes())
    # A short reference sample keeps each example cheap (the loader does not count rows).
    data["reference"] = {name: values[:5] for name, values in data["reference"].items()}
    return data


@st.composite
def manifest_inputs(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """Any JSON, or the manifest with one field (top level or one level down) mutated."""
    if draw(st.booleans()):
        return draw(JSON)
    data = draw(near(copy.deepcopy(valid)))
    nested = [key for key, value in data.items() if isinstance(value, dict) and value]
    if nested and draw(st.booleans()):
        key = draw(st.sampled_from(nested))
        data[key] = draw(near(data[key]))
    return data


@FUZZ
@given(data=st.data())
def test_manifests_load_or_name_the_field(manifest: dict[str, Any], data: st.DataObject) -> None:
    candidate = data.draw(manifest_inputs(manifest))
    try:
        loaded = Manifest.from_dict(candidate, origin="manifest")
    except ModelLoadError as exc:
        assert str(exc).startswith("manifest"), exc  # names where: manifest.<field>
        return
    assert Manifest.from_dict(orjson.loads(orjson.dumps(loaded.to_dict()))) == loaded
