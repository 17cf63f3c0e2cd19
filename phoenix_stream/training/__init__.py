"""Training: synthetic data and the demo models."""
