import pytest

from tests.exporter import faults


@pytest.fixture
def proxies():
    """Proxies on loopback (faults.FaultServers), all stopped after the test."""
    fleet = faults.FaultServers()
    yield fleet
    fleet.stop()
