"""Fixtures of the exporter tests."""

from __future__ import annotations

import pytest

from tests.exporter import faults


@pytest.fixture
def servers():
    """Misbehaving (or healthy) proxies on loopback, stopped after the test."""
    fleet = faults.FaultServers()
    yield fleet
    fleet.stop()
