"""Drift detection: binned histograms per window, KS tests against the reference, the alarm rule."""
