"""The stats filter the exporter sends to Envoy returns exactly the families it reads, with the
same numbers as the full answer, under Consul's (Envoy's default) and Istio's tag rules."""

from __future__ import annotations

import pytest

from meshobs.exporter.normalize import DIALECTS, normalize
from meshobs.exporter.parse import line_filter
from tests.e2e.test_exporter_istio_tags import istio_sidecar
from tests.support.envoy import start_envoy
from tests.support.procs import http_get


def _kept(body: bytes, dialect) -> list[bytes]:
    lines = line_filter(dialect)
    lines.feed(body)
    return lines.lines()


def _families(lines) -> set[bytes]:
    return {line.split(b"{")[0].split(b" ")[0] for line in lines}


@pytest.mark.parametrize("mesh", ["consul", "istio"])
def test_the_filtered_answer_holds_the_read_families_only_with_the_same_numbers(processes, tmp_path, mesh):
    """After allowed, denied, certificate-less and plaintext attempts, ?usedonly&filter= gives the same reading as the full answer and no other family."""
    dialect = DIALECTS[mesh]
    envoy = start_envoy(processes, tmp_path, customize=istio_sidecar if mesh == "istio" else None)
    pki = envoy.pki
    assert envoy.request(pki.allowed) == 200
    assert envoy.request(pki.denied) == 403
    assert envoy.request(None) is None
    assert envoy.request(None, tls=False) is None
    full = http_get(f"{envoy.admin_url}/stats/prometheus")[1]
    filtered = http_get(f"{envoy.admin_url}/stats/prometheus?{dialect.stats_query}")[1]
    samples = [line for line in filtered.split(b"\n") if line and not line.startswith(b"#")]
    assert samples == _kept(filtered, dialect)  # nothing the exporter does not read
    assert _families(samples) == _families(line for line in _kept(full, dialect) if not line.endswith(b" 0"))
    reading = normalize(dialect, _parse(full, dialect))
    assert normalize(dialect, _parse(filtered, dialect)) == reading
    assert reading.counters[("meshobs_authz_denied_total", "")] == 1
    assert len(filtered) * 20 < len(full)


def _parse(body: bytes, dialect):
    lines = line_filter(dialect)
    lines.feed(body)
    return lines.samples()
