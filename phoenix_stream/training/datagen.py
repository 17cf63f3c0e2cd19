"""Synthetic credit-risk data: named features, deterministic entities and a known labelling rule.

Each entity (a loan applicant) has a profile kept in the online store; each request carries
the loan being asked for. Because the probability of default is a known function of both
(`default_probability`), feedback, model quality and drift all have a ground truth.

Money is in thousands of euros, durations in months, rates in percent a year.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy import special, stats

__all__ = [
    "FEATURE_NAMES",
    "PROFILE_FEATURES",
    "REQUEST_FEATURES",
    "default_probability",
    "entity_id_for",
    "entity_profile",
    "make_dataset",
    "profiles",
    "sample_labels",
    "sample_request_features",
]

PROFILE_FEATURES: tuple[str, ...] = (
    "age",  # years
    "annual_income",  # thousands of euros a year
    "employment_years",  # years with the current employer
    "existing_debt",  # thousands of euros owed elsewhere
    "late_payments_24m",  # count of late payments in the last 24 months
    "open_credit_lines",  # count
    "savings",  # thousands of euros
)
REQUEST_FEATURES: tuple[str, ...] = (
    "credit_amount",  # thousands of euros asked for
    "duration_months",  # loan term, months
    "interest_rate",  # percent a year
)
FEATURE_NAMES: tuple[str, ...] = PROFILE_FEATURES + REQUEST_FEATURES

_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
_DURATIONS = np.array([6, 12, 18, 24, 36, 48, 60, 72], dtype=np.float64)
_DURATION_LOGITS = np.array([-1.2, 0.4, 0.0, 0.5, 0.3, -0.4, -0.8, -1.6])
# Intercept of the default score, chosen so about 18 % of applicants default.
_SCORE_INTERCEPT = -2.7


def entity_id_for(i: int) -> str:
    """The entity id of the i-th synthetic applicant, e.g. 42 -> "c000042"."""
    if i < 0:
        raise ValueError(f"entity index must be >= 0, got {i}")
    return f"c{i:06d}"


def _entity_keys(entity_ids: Sequence[str], seed: int) -> np.ndarray:
    # sha256, not hash(): Python salts str hashes per process, and every worker must agree.
    keys = np.empty(len(entity_ids), dtype=np.uint64)
    for i, entity_id in enumerate(entity_ids):
        digest = hashlib.sha256(f"{seed}:{entity_id}".encode()).digest()
        keys[i] = int.from_bytes(digest[:8], "little")
    return keys


def _uniforms(keys: np.ndarray, stream: int) -> np.ndarray:
    """Counter-based uniforms in (0, 1): splitmix64(key + stream), one per key.

    One Generator per entity would cost ~20 us each; this keeps 100k entities in milliseconds.
    Arrays only: numpy integer arrays wrap on overflow silently, which splitmix64 relies on.
    """
    z = keys + np.uint64((stream + 1) * 0x9E3779B97F4A7C15 % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(2**53)


def profiles(entity_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """Profiles of many entities at once: float64 array (n, len(PROFILE_FEATURES)).

    Deterministic per (entity_id, seed) and independent of the other ids in the call.
    """
    keys = _entity_keys(entity_ids, seed)
    z = [special.ndtri(_uniforms(keys, k)) for k in range(5)]
    u = [_uniforms(keys, k) for k in range(5, 8)]

    age = np.clip(np.round(41.0 + 12.0 * z[0]), 19.0, 80.0)
    # Tenure is a share of the working life so far: older applicants tend to have more.
    employment_years = np.round((age - 18.0) * special.expit(-1.0 + 1.2 * z[1]), 1)
    log_income = 3.55 + 0.012 * (age - 41.0) + 0.025 * np.minimum(employment_years, 20.0)
    annual_income = np.round(np.clip(np.exp(log_income + 0.45 * z[2]), 9.0, 400.0), 2)
    existing_debt = np.round(annual_income * np.minimum(0.35 * np.exp(0.8 * z[3]), 4.0), 2)
    # Late payments: Poisson whose rate rises with indebtedness and falls with age.
    debt_ratio = existing_debt / annual_income
    late_rate = np.exp(-1.1 + 0.7 * z[4] + 0.6 * np.log1p(debt_ratio) - 0.015 * (age - 41.0))
    late_payments = stats.poisson.ppf(u[0], late_rate)
    open_lines = stats.poisson.ppf(u[1], 1.0 + 0.06 * (age - 18.0) + 1.5 * debt_ratio)
    savings = np.round(
        annual_income * np.exp(-1.6 + 1.1 * special.ndtri(u[2]) - 0.5 * debt_ratio), 2
    )

    out = np.column_stack(
        [age, annual_income, employment_years, existing_debt, late_payments, open_lines, savings]
    )
    return out.astype(np.float64)


def entity_profile(entity_id: str, seed: int = 0) -> dict[str, float]:
    """The profile features of one entity, name -> value (same values as `profiles`)."""
    row = profiles([entity_id], seed=seed)[0]
    return {name: float(value) for name, value in zip(PROFILE_FEATURES, row, strict=True)}


def sample_request_features(
    rng: np.random.Generator, n: int, shift: float = 0.0
) -> dict[str, np.ndarray]:
    """Draw n loan requests, name -> float64 array (n,).

    ``shift`` (in rough standard deviations, 0 = training distribution) moves every request
    feature towards bigger, longer, dearer loans; negative values move the other way.
    """
    log_amount = np.log(7.0) + 0.75 * (rng.standard_normal(n) + shift)
    credit_amount = np.round(np.clip(np.exp(log_amount), 0.5, 150.0), 2)
    logits = _DURATION_LOGITS + shift * np.linspace(-1.0, 1.0, _DURATIONS.size)
    weights = np.exp(logits - logits.max())
    duration = rng.choice(_DURATIONS, size=n, p=weights / weights.sum())
    interest_rate = np.round(np.clip(8.0 + 2.5 * (rng.standard_normal(n) + shift), 1.0, 35.0), 2)
    return {
        "credit_amount": credit_amount,
        "duration_months": duration.astype(np.float64),
        "interest_rate": interest_rate,
    }


def default_probability(X: np.ndarray) -> np.ndarray:
    """The known rule: probability of default, float64 (n,), from X (n, F) in FEATURE_NAMES order.

    A logistic of a nonlinear score: payment burden, indebtedness, payment history (with a
    jump at 3+ late payments), tenure, savings cover and a young-borrower bump.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"X must have shape (n, {len(FEATURE_NAMES)}), got {X.shape}")

    def col(name: str) -> np.ndarray:
        return X[:, _COL[name]]

    amount, months = col("credit_amount"), np.maximum(col("duration_months"), 1.0)
    monthly_rate = np.maximum(col("interest_rate"), 0.0) / 1200.0
    # Annuity payment; the limit amount / months covers a zero rate.
    safe_rate = np.where(monthly_rate > 0.0, monthly_rate, 1.0)
    annuity = amount * safe_rate / (1.0 - (1.0 + safe_rate) ** -months)
    payment = np.where(monthly_rate > 0.0, annuity, amount / months)
    monthly_income = np.maximum(col("annual_income"), 1.0) / 12.0
    burden = np.minimum(payment / monthly_income, 2.0)
    debt_ratio = np.maximum(col("existing_debt"), 0.0) / np.maximum(col("annual_income"), 1.0)
    late = np.maximum(col("late_payments_24m"), 0.0)
    cover = np.maximum(col("savings"), 0.0) / np.maximum(amount, 0.1)

    score = (
        _SCORE_INTERCEPT
        + 5.0 * burden
        + 1.4 * np.log1p(debt_ratio)
        + 0.45 * np.minimum(late, 6.0)
        + 0.9 * (late >= 3.0)
        - 0.08 * np.minimum(col("employment_years"), 10.0)
        - 0.6 * np.log1p(cover)
        + 0.7 * (col("age") < 25.0)
        + 0.08 * np.maximum(col("open_credit_lines") - 5.0, 0.0)
    )
    return np.asarray(special.expit(score), dtype=np.float64)


def sample_labels(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bernoulli draws of default (1) or not (0), int64 (n,), from probabilities p (n,)."""
    return (rng.random(np.shape(p)) < np.asarray(p)).astype(np.int64)


def make_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A labelled data set: X float32 (n, F) in FEATURE_NAMES order and y int64 (n,).

    Rows are entities ``entity_id_for(0..n-1)`` drawn with ``seed``, each with one request.
    """
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    rng = np.random.default_rng(seed)
    prof = profiles([entity_id_for(i) for i in range(n)], seed=seed)
    requests = sample_request_features(rng, n)
    X = np.column_stack([prof, *(requests[name] for name in REQUEST_FEATURES)])
    y = sample_labels(default_probability(X), rng)
    return X.astype(np.float32), y
