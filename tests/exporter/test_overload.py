"""More targets than one interval can read: a longer effective interval, never targets down,
and the overrun counted and logged with the sizing advice (the real exporter process)."""

from __future__ import annotations

import re

from tests.exporter import faults
from tests.exporter.running import start_exporter
from tests.exporter.test_faults import targets_json
from tests.support.procs import wait_until


def test_an_overloaded_replica_reads_every_target_in_turn_and_says_so(processes, tmp_path, proxies):
    """Ten proxies taking 0.3 s each, one at a time, every 0.2 s: all stay up with exact counts, cycles are cut at their deadline and counted as overruns, and a warning gives the sizing advice."""
    ports = {f"slow{i}": proxies.add(faults.slow(0.3)) for i in range(10)}
    targets = tmp_path / "targets.json"
    targets.write_text(targets_json(ports))
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--concurrency", "1",
                              "--scrape-interval", "200ms", "--scrape-timeout", "2s")
    # every target is read in turn although no cycle can read them all
    wait_until(lambda: all(exporter.value("meshobs_target_up", workload=name) == 1 for name in ports),
               timeout=30, what="every target read once")
    wait_until(lambda: exporter.value("meshobs_cycle_overrun_total") >= 3, what="three overruns counted")
    samples = exporter.samples()
    assert exporter.value("meshobs_cycle_targets") == 10
    assert exporter.value("meshobs_cycle_deferred_targets") > 0
    assert {v for (n, _), v in samples.items() if n == "meshobs_target_up"} == {1.0}
    assert {v for (n, _), v in samples.items() if n == "meshobs_tls_handshakes_total"} == {7.0}
    # never timed out: slowness is read in turn, not counted against the proxies
    assert {v for (n, items), v in samples.items() if n == "meshobs_scrape_errors_total"
            and dict(items)["reason"] == "timeout"} == {0.0}
    warnings = [line for line in exporter.process.log().splitlines() if "scrape cycle overran" in line]
    assert len(warnings) == 1  # once, not every cycle
    assert re.fullmatch(
        r"WARNING meshobs\.exporter\.runner: scrape cycle overran: 10 targets took \d+\.\ds, longer than the 0\.2s "
        r"interval \(\d+ left for the next cycle\); each proxy is read about every \d+s instead, its last values kept "
        r"meanwhile\. This replica reads about \d+ targets per interval: run more replicas \(deploy\.shards, "
        r"--shard INDEX/COUNT\) so that each has fewer, or raise --concurrency if the proxies are slow rather than "
        r"the exporter busy", warnings[0]), warnings[0]
