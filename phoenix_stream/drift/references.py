"""What each served model version is compared with: its bins and a fresh monitor.

Built once per (model, version), off the event loop, from the version's manifest: the
reference sample of every input feature (>= 500 rows in the demo models) and the model's
own scores on those rows, which become the ``__score__`` pseudo-feature.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import numpy as np

from phoenix_stream.drift.histograms import SCORE, Bins
from phoenix_stream.drift.monitor import DriftMonitor, DriftRule
from phoenix_stream.exceptions import ModelLoadError
from phoenix_stream.serving.models import Servable, ServingModels

Key = tuple[str, str]  # (model, version)


class DriftReferences:
    """Per (model, version): the monitor holding its bins and reference counts."""

    def __init__(self, models: ServingModels, rule: DriftRule) -> None:
        self._models = models
        self.rule = rule
        self._bins: dict[Key, Bins] = {}

    async def prepare(self, keys: Iterable[Key]) -> None:
        """Build what is missing among ``keys`` (model loads and binning in threads)."""
        missing = [key for key in dict.fromkeys(keys) if key not in self._bins]
        if not missing:
            return
        await self._models.prepare(missing)
        for key in missing:
            try:
                servable = self._models.lookup(*key)
            except ModelLoadError:
                continue  # not served either: its predictions cannot be binned yet
            self._bins[key] = await asyncio.to_thread(_bins_of, servable, self.rule)

    def bins(self, model: str, version: str) -> Bins | None:
        """The bins of a prepared version (feature names, then ``__score__``)."""
        return self._bins.get((model, version))

    def monitor(self, model: str, version: str) -> DriftMonitor | None:
        """A fresh monitor for a prepared version (its state is restored by the caller)."""
        bins = self._bins.get((model, version))
        return None if bins is None else DriftMonitor(model, version, bins, self.rule)


def _bins_of(servable: Servable, rule: DriftRule) -> Bins:
    manifest = servable.loaded.manifest
    rows = manifest.reference_rows()
    scores = servable.predict_proba(rows).astype(np.float64)
    reference = {name: rows[:, j].tolist() for j, name in enumerate(manifest.feature_names)}
    return Bins.from_reference({**reference, SCORE: scores.tolist()}, bins=rule.bins)
