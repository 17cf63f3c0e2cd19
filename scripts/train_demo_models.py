"""Train the demo models (credit-risk v1 champion, v2 challenger) and print their metrics.

    .venv/bin/python scripts/train_demo_models.py --models-dir ./models --seed 7 --rows 40000
    .venv/bin/python scripts/train_demo_models.py --bench   # also ONNX rows/s, 1 thread

The benchmark reports ONNX Runtime throughput at batch 1 and 512 per version, with ratios
against v1 at batch 1 measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from phoenix_stream.serving.registry import ModelRegistry
from phoenix_stream.training.datagen import make_dataset
from phoenix_stream.training.train import DEMO_MODEL_NAME, train_demo_models


def _rows_per_second(registry: ModelRegistry, version: str, X: np.ndarray, batch: int) -> float:
    """Rows/s of predict_proba at a batch size, over about 0.5 s after a warm-up."""
    model = registry.load(DEMO_MODEL_NAME, version)
    batches = [X[i : i + batch] for i in range(0, len(X) - batch + 1, batch)]
    for chunk in batches[:50]:
        model.predict_proba(chunk)
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.5:
        for chunk in batches[:200]:
            model.predict_proba(chunk)
        rows += batch * len(batches[:200])
    return rows / (time.perf_counter() - started)


def main() -> None:
    """Parse arguments, train, print metrics (and the benchmark with --bench)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=40_000, help="rows of synthetic data")
    parser.add_argument("--bench", action="store_true", help="measure ONNX rows/s, 1 thread")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    started = time.perf_counter()
    paths = train_demo_models(args.models_dir, seed=args.seed, n_rows=args.rows)
    print(f"trained {len(paths)} versions in {time.perf_counter() - started:.2f} s")

    registry = ModelRegistry(args.models_dir, intra_op_threads=1)
    for path in paths:
        m = registry.load(DEMO_MODEL_NAME, path.name).manifest
        metrics = " ".join(
            f"{k}={v}" if isinstance(v, int) else f"{k}={v:.4f}" for k, v in m.metrics.items()
        )
        print(f"{m.name} v{m.version} {m.algorithm}: {metrics}")
        print(f"  onnx parity {m.onnx_parity_max_abs_diff:.2g}  data_hash {m.data_hash[:16]}")

    if args.bench:
        X, _ = make_dataset(20_480, seed=args.seed + 1)
        baseline = _rows_per_second(registry, paths[0].name, X, 1)
        for path in paths:
            for batch in (1, 512):
                rate = _rows_per_second(registry, path.name, X, batch)
                print(
                    f"  v{path.name} batch {batch:>3}: {rate:>10,.0f} rows/s "
                    f"({1e6 * batch / rate:,.1f} us/call, x{rate / baseline:.1f} v1 batch 1)"
                )


if __name__ == "__main__":
    main()
