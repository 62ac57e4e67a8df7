"""Hypothesis settings shared by the property tests: deterministic, no example database."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
