"""The drift rule of one model version, applied window after window, with the alarm state.

An agent keeps a histogram (``Bins.count``) per model and window in a table and, when
event time crosses the window's end, hands the counts to ``DriftMonitor.close_window``.
The monitor's own state is two numbers (``state()``), small enough for a table value.

Alarm: a window drifts when any feature (the model's score included, as ``SCORE``)
drifts under the rule; the alarm is raised once, when drift has lasted ``persistence``
windows in a row, and re-arms after a window without drift. A window too small to judge
("insufficient") neither extends nor breaks a run. The trigger id is a pure function of
model, version and the alarming window's start, so workers and replays agree on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from phoenix_stream.drift.histograms import BINS, SCORE, Bins, Sample
from phoenix_stream.drift.report import CORRECTIONS, Correction, DriftReport
from phoenix_stream.drift.statistics import feature_tests
from phoenix_stream.exceptions import ValidationError
from phoenix_stream.messages.validation import is_identifier

__all__ = ["DriftMonitor", "DriftRule", "trigger_id"]


@dataclass(frozen=True, slots=True)
class DriftRule:
    """When a window drifts and when drift alarms (defaults from docs/architecture.md section 5)."""

    alpha: float = 0.05  # family-wise level over all features and the score
    correction: Correction = "bonferroni"
    effect_floor: float = 0.1  # minimum KS D, 0 to 1
    min_window: int = 500  # rows; fewer give the verdict "insufficient"
    persistence: int = 2  # drifted windows in a row that raise the alarm
    bins: int = BINS  # equal-mass bins per feature, before deduplication

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be strictly between 0 and 1, got {self.alpha}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}")
        if not (math.isfinite(self.effect_floor) and self.effect_floor >= 0.0):
            raise ValueError(f"effect_floor must be >= 0, got {self.effect_floor}")
        if self.min_window < 0 or self.persistence < 1 or self.bins < 1:
            raise ValueError("min_window must be >= 0, persistence and bins >= 1")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON, the ``rule`` of a report."""
        return {
            "alpha": self.alpha,
            "correction": self.correction,
            "effect_floor": self.effect_floor,
            "min_window": self.min_window,
            "persistence": self.persistence,
            "bins": self.bins,
        }


def trigger_id(model: str, version: str, window_start: float) -> str:
    """The alarm's deduplication key, "model:version:window_start in ms since epoch"."""
    return f"{model}:{version}:{round(window_start * 1000)}"


class DriftMonitor:
    """Applies the rule to each closed window of one model version and keeps the run length."""

    def __init__(
        self,
        model: str,
        version: str,
        bins: Bins,
        rule: DriftRule | None = None,
        *,
        consecutive: int = 0,
        last_window_end: float | None = None,
    ) -> None:
        if not (is_identifier(model) and is_identifier(version)):
            raise ValueError(f"model and version must be identifiers, got {model!r} {version!r}")
        self.rule = rule or DriftRule()
        if bins.requested != self.rule.bins:
            raise ValueError(
                f"bins were built with {bins.requested} bins, the rule says {self.rule.bins}"
            )
        self.model = model
        self.version = version
        self.bins = bins
        self._consecutive = consecutive
        self._last_window_end = last_window_end

    @classmethod
    def for_model(
        cls,
        model: str,
        version: str,
        reference: Mapping[str, Sample],
        scores: Sample,
        rule: DriftRule | None = None,
    ) -> DriftMonitor:
        """A fresh monitor from the reference features and the model's scores on those rows.

        The score becomes the last feature, named ``SCORE``: window counts are (F+1, B).
        """
        if SCORE in reference:
            raise ValueError(f"{SCORE!r} is reserved for the model's score")
        rule = rule or DriftRule()
        bins = Bins.from_reference({**reference, SCORE: scores}, bins=rule.bins)
        return cls(model, version, bins, rule)

    @property
    def consecutive(self) -> int:
        """Drifted windows in a row up to the last closed window."""
        return self._consecutive

    def already_closed(self, window_start: float) -> bool:
        """Whether a window starting then (epoch seconds) comes before the last one closed.

        A replay after a restart may close a window twice; counting it again could turn
        one drifted window into a false persistent alarm, so check before closing.
        """
        return self._last_window_end is not None and window_start < self._last_window_end

    def close_window(
        self, counts: np.ndarray, window_start: float, window_end: float
    ) -> DriftReport:
        """Judge one window's counts (F+1, B) over [window_start, window_end) epoch seconds.

        Raises ValueError for counts of the wrong shape or a window that is already closed.
        """
        if not window_start < window_end:
            raise ValueError(f"window_end {window_end} must be after window_start {window_start}")
        if self.already_closed(window_start):
            raise ValueError(
                f"window starting at {window_start} is before the last closed window's end"
                f" {self._last_window_end}"
            )
        rule = self.rule
        tests = feature_tests(
            np.asarray(counts),
            self.bins.reference_counts,
            self.bins.names,
            alpha=rule.alpha,
            correction=rule.correction,
            effect_floor=rule.effect_floor,
            min_window=rule.min_window,
        )
        if tests.verdict == "drift":
            self._consecutive += 1
        elif tests.verdict == "no_drift":
            self._consecutive = 0
        self._last_window_end = window_end
        alarm = tests.verdict == "drift" and self._consecutive == rule.persistence
        return DriftReport(
            model=self.model,
            version=self.version,
            window_start=window_start,
            window_end=window_end,
            n=tests.n,
            features=tests.features,
            verdict=tests.verdict,
            consecutive=self._consecutive,
            alarm=alarm,
            trigger_id=trigger_id(self.model, self.version, window_start) if alarm else None,
            rule=rule.as_dict(),
        )

    def state(self) -> dict[str, Any]:
        """The monitor's state in plain JSON, for a table value; see ``from_state``."""
        return {
            "model": self.model,
            "version": self.version,
            "consecutive": self._consecutive,
            "last_window_end": self._last_window_end,
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], bins: Bins, rule: DriftRule | None = None
    ) -> DriftMonitor:
        """A monitor resumed from ``state()``; ValidationError naming the field when invalid."""
        if not isinstance(state, Mapping):
            raise ValidationError("$", "a monitor state must be an object")
        names: dict[str, str] = {}
        for key in ("model", "version"):
            value = state.get(key)
            if not isinstance(value, str) or not is_identifier(value):
                raise ValidationError(key, "must be a model name or version")
            names[key] = value
        consecutive = state.get("consecutive")
        if type(consecutive) is not int or not 0 <= consecutive < 2**63:
            raise ValidationError("consecutive", "must be a non-negative integer")
        end = state.get("last_window_end")
        if end is not None and (
            isinstance(end, bool) or not isinstance(end, int | float) or not -1e15 < end < 1e15
        ):
            raise ValidationError("last_window_end", "must be seconds since epoch or null")
        return cls(
            names["model"],
            names["version"],
            bins,
            rule,
            consecutive=consecutive,
            last_window_end=None if end is None else float(end),
        )
