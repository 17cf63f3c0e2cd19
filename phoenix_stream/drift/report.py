"""The drift report of one closed window: the record on the ``drift`` topic and in PostgreSQL.

``decode_report`` is total: any bytes give a report or a ``ValidationError`` naming the
field, never another exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import orjson

from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.validation import decode_json, model_name

__all__ = [
    "CORRECTIONS",
    "MAX_REPORT_BYTES",
    "RULE_KEYS",
    "VERDICTS",
    "Correction",
    "DriftReport",
    "FeatureDrift",
    "Verdict",
    "decode_report",
    "parse_report",
]

Verdict = Literal["drift", "no_drift", "insufficient"]
Correction = Literal["bonferroni", "bh"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
CORRECTIONS: tuple[Correction, ...] = get_args(Correction)
RULE_KEYS = ("alpha", "correction", "effect_floor", "min_window", "persistence", "bins")
MAX_REPORT_BYTES = 1_048_576  # a report of 1,000 features is about 100 kB
MAX_FEATURES = 1000
MAX_NAME_LENGTH = 128  # characters of a feature name
_YEAR_10000 = 253_402_300_800.0  # seconds since epoch; PostgreSQL's timestamps end there
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's test in one window: KS D (0-1), its p-value, the effect size, the call."""

    statistic: float  # KS D between the binned CDFs, 0 to 1
    p_value: float  # 0 to 1
    effect: float  # KS D, or Wasserstein distance in reference standard deviations
    drifted: bool  # p below the corrected threshold and effect at or above the floor


@dataclass(frozen=True, slots=True)
class DriftReport:
    """The verdict on one window of one model version, and the alarm state after it."""

    model: str
    version: str
    window_start: float  # seconds since epoch, inclusive
    window_end: float  # seconds since epoch, exclusive
    n: int  # rows in the window
    features: Mapping[str, FeatureDrift]
    verdict: Verdict
    consecutive: int  # drifted windows in a row, this one included
    alarm: bool  # raised once per trigger, when ``consecutive`` first reaches persistence
    trigger_id: str | None  # "model:version:window_start_ms" of the alarm, else None
    rule: Mapping[str, Any] = field(default_factory=dict)  # the RULE_KEYS and their values

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, the wire and storage shape."""
        return {
            "model": self.model,
            "version": self.version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "n": self.n,
            "features": {
                name: {
                    "statistic": f.statistic,
                    "p_value": f.p_value,
                    "effect": f.effect,
                    "drifted": f.drifted,
                }
                for name, f in self.features.items()
            },
            "verdict": self.verdict,
            "consecutive": self.consecutive,
            "alarm": self.alarm,
            "trigger_id": self.trigger_id,
            "rule": dict(self.rule),
        }

    def encode(self) -> bytes:
        """JSON bytes for the drift topic."""
        return orjson.dumps(self.as_dict())

    def drifted_features(self) -> list[str]:
        """Names of the features that drifted in this window, in report order."""
        return [name for name, f in self.features.items() if f.drifted]


def decode_report(raw: bytes | None) -> DriftReport:
    """A report from the topic's bytes; ValidationError naming the field when invalid."""
    return parse_report(decode_json(raw, MAX_REPORT_BYTES))


def parse_report(data: Any) -> DriftReport:
    """Validate a decoded report (plain JSON types); ValidationError naming the field."""
    if not isinstance(data, dict):
        raise ValidationError("$", "a drift report must be a JSON object")
    model, version = model_name(data, "model"), model_name(data, "version")
    start = _epoch_seconds(data.get("window_start"), "window_start")
    end = _epoch_seconds(data.get("window_end"), "window_end")
    if end < start:
        raise ValidationError("window_end", "must not be before window_start")
    verdict = data.get("verdict")
    if verdict not in VERDICTS:
        raise ValidationError("verdict", f"must be one of {', '.join(VERDICTS)}")
    alarm = _bool(data.get("alarm"), "alarm")
    trigger_id = data.get("trigger_id")
    if alarm != (trigger_id is not None):
        raise ValidationError("trigger_id", "must be a string exactly when alarm is true")
    if trigger_id is not None and not _text_ok(trigger_id, 300):
        raise ValidationError("trigger_id", "must be text of at most 300 characters")
    checked_verdict: Verdict = verdict
    return DriftReport(
        model=model,
        version=version,
        window_start=start,
        window_end=end,
        n=_count(data.get("n"), "n"),
        features=_features(data.get("features")),
        verdict=checked_verdict,
        consecutive=_count(data.get("consecutive"), "consecutive"),
        alarm=alarm,
        trigger_id=trigger_id,
        rule=_rule(data.get("rule")),
    )


def _features(value: Any) -> dict[str, FeatureDrift]:
    if not isinstance(value, dict) or len(value) > MAX_FEATURES:
        raise ValidationError("features", f"must be an object of at most {MAX_FEATURES} features")
    out: dict[str, FeatureDrift] = {}
    for name, test in value.items():
        if not _text_ok(name, MAX_NAME_LENGTH) or not name:
            raise ValidationError("features", f"names must be 1 to {MAX_NAME_LENGTH} characters")
        where = f"features.{name}"
        if not isinstance(test, dict):
            raise ValidationError(where, "must be an object")
        out[name] = FeatureDrift(
            statistic=_number(test.get("statistic"), f"{where}.statistic", 0.0, 1.0),
            p_value=_number(test.get("p_value"), f"{where}.p_value", 0.0, 1.0),
            effect=_number(test.get("effect"), f"{where}.effect", 0.0, math.inf),
            drifted=_bool(test.get("drifted"), f"{where}.drifted"),
        )
    return out


def _rule(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("rule", "must be an object")
    if set(value) != set(RULE_KEYS):
        raise ValidationError("rule", f"must hold exactly {', '.join(RULE_KEYS)}")
    alpha = _number(value["alpha"], "rule.alpha", 0.0, 1.0)
    if not 0.0 < alpha < 1.0:
        raise ValidationError("rule.alpha", "must be strictly between 0 and 1")
    if value["correction"] not in CORRECTIONS:
        raise ValidationError("rule.correction", f"must be one of {', '.join(CORRECTIONS)}")
    persistence = _count(value["persistence"], "rule.persistence")
    bins = _count(value["bins"], "rule.bins")
    if persistence < 1 or bins < 1:
        raise ValidationError(
            "rule.persistence" if persistence < 1 else "rule.bins", "must be >= 1"
        )
    return {
        "alpha": alpha,
        "correction": value["correction"],
        "effect_floor": _number(value["effect_floor"], "rule.effect_floor", 0.0, math.inf),
        "min_window": _count(value["min_window"], "rule.min_window"),
        "persistence": persistence,
        "bins": bins,
    }


def _text_ok(value: Any, limit: int) -> bool:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be stored or re-encoded
        return False
    return True


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(where, "must be true or false")
    return value


def _count(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= _INT64_MAX:
        raise ValidationError(where, "must be a non-negative 64-bit integer")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(where, "must be a number")
    try:
        return float(value)
    except OverflowError as exc:  # a Python int beyond float range
        raise ValidationError(where, "must be a finite number") from exc


def _number(value: Any, where: str, low: float, high: float) -> float:
    number = _float(value, where)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValidationError(where, f"must be a finite number from {low} to {high}")
    return number


def _epoch_seconds(value: Any, where: str) -> float:
    number = _float(value, where)
    if not (math.isfinite(number) and 0 <= number < _YEAR_10000):
        raise ValidationError(where, "must be seconds since epoch before year 10000")
    return number
