"""The online metrics agree with sklearn.metrics on random data, and the sums agree too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata
from sklearn import metrics as skm

from phoenix_stream import metrics as prom
from phoenix_stream.lifecycle.evaluation import (
    LOG_LOSS_EPS,
    LabelledSums,
    VariantMetrics,
    accuracy,
    auc,
    average_ranks,
    brier,
    log_loss,
    log_loss_term,
    positive_rate,
    publish,
)


def _data(seed: int, n: int, p: float = 0.4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < p).astype(int)
    # Informative scores, rounded so that ties occur, plus exact 0 and 1 for the clipping.
    scores = np.clip(np.round(0.3 * labels + 0.7 * rng.random(n), 2), 0.0, 1.0)
    scores[: min(n, 3)] = [0.0, 1.0, 0.5][: min(n, 3)]
    predicted = (scores >= 0.5).astype(int)
    return labels, scores, predicted


@given(st.integers(0, 2**32 - 1), st.integers(2, 400), st.floats(0.05, 0.95))
@settings(max_examples=60, deadline=None)
def test_metrics_match_sklearn(seed: int, n: int, p: float) -> None:
    labels, scores, predicted = _data(seed, n, p)
    if len(set(labels)) < 2:
        labels[0], labels[1] = 0, 1
    assert accuracy(labels, predicted) == pytest.approx(skm.accuracy_score(labels, predicted))
    assert log_loss(labels, scores) == pytest.approx(
        skm.log_loss(labels, y_proba=scores, labels=[0, 1]), rel=1e-9
    )
    assert brier(labels, scores) == pytest.approx(skm.brier_score_loss(labels, scores))
    assert auc(labels, scores, min_per_class=1) == pytest.approx(
        skm.roc_auc_score(labels, scores), rel=1e-12
    )
    assert positive_rate(labels) == pytest.approx(labels.mean())


def test_auc_needs_enough_labels_of_each_class() -> None:
    labels, scores, _ = _data(7, 1000, p=0.04)
    positives = int(labels.sum())
    assert auc(labels, scores, min_per_class=positives + 1) is None
    assert auc(labels, scores, min_per_class=positives) == pytest.approx(
        skm.roc_auc_score(labels, scores)
    )
    assert auc([1] * 100, [0.5] * 100, min_per_class=1) is None  # one class only


def test_sums_give_the_same_metrics_as_the_rows() -> None:
    labels, scores, predicted = _data(3, 500)
    sums = LabelledSums(
        n=len(labels),
        positives=int(labels.sum()),
        correct=int((labels == predicted).sum()),
        log_loss_sum=sum(
            log_loss_term(int(y), float(s)) for y, s in zip(labels, scores, strict=True)
        ),
        brier_sum=float(((scores - labels) ** 2).sum()),
    )
    area = auc(labels, scores)
    from_sums = VariantMetrics.from_sums("1", "champion", sums, area)
    direct = VariantMetrics.of_rows("1", "champion", labels, scores, predicted)
    assert from_sums.n == direct.n == 500
    for name in ("accuracy", "log_loss", "brier", "positive_rate", "auc"):
        assert getattr(from_sums, name) == pytest.approx(getattr(direct, name), rel=1e-12)


def test_clipping_keeps_log_loss_finite() -> None:
    assert log_loss_term(1, 0.0) == pytest.approx(-np.log(LOG_LOSS_EPS))
    assert log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-np.log(LOG_LOSS_EPS))


@pytest.mark.parametrize(
    "bad",
    [([], []), ([0, 1], [0.5]), ([0, 2], [0.1, 0.2])],
)
def test_bad_inputs_raise_value_error(bad: tuple[list[int], list[float]]) -> None:
    with pytest.raises(ValueError):
        brier(*bad)


def test_publish_sets_gauges_and_drops_a_missing_auc() -> None:
    labels = ("m-publish", "1", "champion")
    first = VariantMetrics("1", "champion", 10, 0.8, 0.4, 0.1, 0.9, 0.3)
    publish("m-publish", [first])
    assert prom.MODEL_ACCURACY.labels(*labels)._value.get() == 0.8
    assert prom.MODEL_AUC.labels(*labels)._value.get() == 0.9
    publish("m-publish", [VariantMetrics("1", "champion", 10, 0.7, 0.4, 0.1, None, 0.3)])
    assert prom.MODEL_ACCURACY.labels(*labels)._value.get() == 0.7
    samples = [s for m in prom.MODEL_AUC.collect() for s in m.samples]
    assert not [s for s in samples if s.labels.get("model") == "m-publish"]


@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=32)
        | st.sampled_from([0.0, 0.5, 1.0]),
        max_size=200,
    )
)
def test_average_ranks_are_scipys_rankdata(values: list[float]) -> None:
    array = np.asarray(values, dtype=np.float64)
    assert np.array_equal(average_ranks(array), rankdata(array, method="average"))
