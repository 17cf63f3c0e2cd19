"""Scenarios that prove a claim end to end on real services, with figures."""
