"""Scoring written out by hand, for the baselines: features in, prediction JSON out.

The same work as the pipeline's predictor for one model version (enrichment with the
same ``assemble``, one ONNX call per batch, the same prediction fields), without Faust,
routing or validation. Used by ``baseline`` and ``http_baseline``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from phoenix_stream.features.codec import StoredFeatures
from phoenix_stream.features.enrich import assemble
from phoenix_stream.serving.registry import ModelRegistry

__all__ = ["DirectScorer"]

# Stored features older than this are ignored (the worker's default, seconds).
DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0


class DirectScorer:
    """One model version: request dicts plus stored features -> encoded predictions."""

    def __init__(
        self,
        models_dir: Path,
        model: str,
        version: str,
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        onnx_threads: int = 1,
    ) -> None:
        self.loaded = ModelRegistry(models_dir, intra_op_threads=onnx_threads).load(model, version)
        manifest = self.loaded.manifest
        self.model = model
        self.version = version
        self.names = manifest.feature_names
        self.defaults = manifest.defaults()
        self.threshold = manifest.output.threshold
        self.max_age_s = max_age_s

    def score(
        self,
        requests: Sequence[dict[str, Any]],
        stored: Sequence[StoredFeatures | None],
        *,
        received_at: float,
        source: str,
    ) -> list[bytes]:
        """One prediction (JSON bytes) per request; ``received_at`` in epoch seconds."""
        if not requests:
            return []
        matrix = assemble(
            self.names,
            self.defaults,
            stored,
            [r.get("features") for r in requests],
            now=received_at,
            max_age_s=self.max_age_s,
        )
        scores = self.loaded.predict_proba(matrix.values)
        predicted_at = time.time()
        latency_ms = (predicted_at - received_at) * 1000.0
        labels = (scores >= self.threshold).tolist()
        rows = matrix.values.tolist()
        out: list[bytes] = []
        for index, (request, score) in enumerate(zip(requests, scores.tolist(), strict=True)):
            out.append(
                orjson.dumps(
                    {
                        "request_id": request.get("request_id"),
                        "entity_id": request["entity_id"],
                        "model": self.model,
                        "version": self.version,
                        "variant": "champion",
                        "score": score,
                        "label": int(labels[index]),
                        "features": dict(zip(self.names, rows[index], strict=True)),
                        "defaults_used": matrix.defaults_used[index],
                        "degraded": False,
                        "source": source,
                        "received_at": received_at,
                        "predicted_at": predicted_at,
                        "latency_ms": latency_ms,
                        "sent_at": request.get("sent_at"),
                    }
                )
            )
        return out
