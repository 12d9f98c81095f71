"""How a recorded family is read at a window, from what the Prometheus's loaded rules record."""

from __future__ import annotations

import pytest

from meshobs import recordings as rec
from meshobs.errors import QueryError
from meshobs.query.recorded import Catalogue, Read

RULES = [(name, {"mesh": "istio"}, 15.0) for name in (
    "destination_service:mesh_requests:rate5m", "destination_service:mesh_requests:rate1h",
    "destination_service:mesh_requests:ratio_rate5m",  # another family sharing the prefix
    "destination_service:mesh_request_duration_seconds:histogram_quantile_rate5m",
)] + [("job:up:sum", {}, 15.0), ("destination_service:mesh_requests:rate5m", {"mesh": "kuma"}, 15.0)]
CATALOGUE = Catalogue.from_rules("http://prom", RULES)


def test_windows_are_read_from_the_loaded_rules():
    """Only meshobs rules of known meshes count; a family's windows are its own, shortest first."""
    assert CATALOGUE.meshes(None) == ["istio"]
    assert CATALOGUE.windows("istio", rec.requests) == ["5m", "1h"]
    assert CATALOGUE.windows("istio", rec.authz_denied) == []


@pytest.mark.parametrize("window, highest, expected", [
    ("5m", False, Read('destination_service:mesh_requests:rate5m{mesh="istio", destination_namespace="shop"}', "5m")),
    ("1h", False, Read('destination_service:mesh_requests:rate1h{mesh="istio", destination_namespace="shop"}', "1h")),
    ("30m", False, Read('sum_over_time(destination_service:mesh_requests:rate5m{mesh="istio", destination_namespace="shop"}[30m]) / 120',
                        "30m")),
    ("1d", False, Read('sum_over_time(destination_service:mesh_requests:rate1h{mesh="istio", destination_namespace="shop"}[1d]) / 5760',
                       "1d")),
    ("1m", False, Read('destination_service:mesh_requests:rate5m{mesh="istio", destination_namespace="shop"}', "5m")),
])
def test_a_window_is_read_exactly_averaged_over_its_evaluations_or_from_the_shortest(window, highest, expected):
    """Recorded windows are read as is, longer ones summed over their evaluations (15 s groups), shorter ones from the shortest."""
    assert CATALOGUE.read("istio", rec.requests, window, highest, destination_namespace="shop") == expected


def test_quantiles_take_their_highest_value_and_unrecorded_families_are_none():
    """A longer window of a quantile is its highest recorded value; a family not recorded for the mesh is None."""
    assert CATALOGUE.read("istio", rec.latency, "1h", True, quantile="0.99") == Read(
        'max_over_time(destination_service:mesh_request_duration_seconds:histogram_quantile_rate5m'
        '{mesh="istio", quantile="0.99"}[1h])', "1h")
    assert CATALOGUE.read("istio", rec.authz_denied, "5m") is None


def test_no_rules_and_missing_mesh_are_errors():
    """No meshobs rule at all, or none for the mesh asked for, is a QueryError naming what is there."""
    with pytest.raises(QueryError, match=r"^Prometheus at http://prom has no meshobs recording rules loaded"):
        Catalogue.from_rules("http://prom", [("job:up:sum", {}, 15.0)]).meshes(None)
    with pytest.raises(QueryError, match=r"no meshobs recording rules for mesh 'consul' \(it has: istio\)$"):
        CATALOGUE.meshes(["consul"])
