"""Serving: model registry, ONNX engine, deployments, routing, the predictor, coalescing."""
