"""What an operator reads of the scrape targets: each target changing state (up <-> failing, with
the reason) at WARNING, a summary line after the first cycle and then periodically, and the
readiness answer of /readyz with the same summary.

The scrape loop reports each result (`up`, `failed`) and the end of each cycle; nothing here
touches the network or the metrics.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from meshobs.exporter.targets import Target

log = logging.getLogger(__name__)

# At most this many state-change lines per minute; the rest are counted into one line per cycle,
# so a fleet losing its network does not write a line per pod per cycle.
CHANGES_PER_MINUTE = 10
SUMMARY_EVERY = 300.0
# targets named per reason in a summary
NAMED = 3


@dataclass
class _Seen:
    up: bool | None = None  # None: not scraped yet
    reason: str = ""
    detail: str = ""
    failures: int = 0  # consecutive


def name(target: Target) -> str:
    return f"{target.mesh}/{target.namespace}/{target.workload} ({target.url})"


class TargetStatus:
    def __init__(self, interval: float, timeout: float, clock=time.monotonic):
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.seen: dict[Target, _Seen] = {}
        self.cycles = 0
        self.last_cycle_end: float | None = None
        self._pending: list[tuple[Target, _Seen, bool]] = []  # (target, state before, now up)
        self._logged: deque[float] = deque()
        self._next_summary: float | None = None

    # reported by the scrape loop
    def up(self, target: Target) -> None:
        self._record(target, True, "", "")

    def failed(self, target: Target, reason: str, detail: str) -> None:
        self._record(target, False, reason, detail)

    def _record(self, target: Target, up: bool, reason: str, detail: str) -> None:
        seen = self.seen.setdefault(target, _Seen())
        before = _Seen(seen.up, seen.reason, seen.detail, seen.failures)
        if up != seen.up or (not up and reason != seen.reason):
            if not (up and seen.up is None):  # a first good scrape is no news
                self._pending.append((target, before, up))
        seen.up, seen.reason, seen.detail = up, reason, detail
        seen.failures = 0 if up else seen.failures + 1

    def end_cycle(self, targets: set[Target]) -> None:
        for gone in set(self.seen) - targets:
            del self.seen[gone]
        self.cycles += 1
        now = self.clock()
        self.last_cycle_end = now
        self._log_changes(now)
        if self._next_summary is None or now >= self._next_summary:
            log.info("%s", self.summary())
            self._next_summary = now + SUMMARY_EVERY

    def _log_changes(self, now: float) -> None:
        while self._logged and now - self._logged[0] > 60.0:
            self._logged.popleft()
        changes, self._pending = self._pending, []
        untold = 0
        for target, before, up in changes:
            seen = self.seen.get(target)
            if seen is None:  # no longer discovered
                continue
            if len(self._logged) >= CHANGES_PER_MINUTE:
                untold += 1
                continue
            self._logged.append(now)
            if up:
                log.warning("target %s is up again after %d failed scrape(s) (%s)", name(target),
                            before.failures, before.reason)
            else:
                log.warning("target %s is failing: %s", name(target), seen.detail or seen.reason)
        if untold:
            log.warning("%d more target(s) changed state (at most %d such lines a minute); %s",
                        untold, CHANGES_PER_MINUTE, self.summary())

    # read by /readyz and the log
    def summary(self) -> str:
        """`412/415 targets up; 3 refused: a, b, c`."""
        # list() first: /readyz asks from the HTTP thread while the scrape loop adds targets
        scraped = {t: s for t, s in list(self.seen.items()) if s.up is not None}
        up = sum(1 for s in scraped.values() if s.up)
        text = f"{up}/{len(scraped)} targets up"
        failing: dict[str, list[Target]] = {}
        for target, seen in sorted(scraped.items(), key=lambda item: (item[0].workload_key, item[0].url)):
            if not seen.up:
                failing.setdefault(seen.reason, []).append(target)
        for reason, down in sorted(failing.items()):
            named = ", ".join(name(t) for t in down[:NAMED])
            more = f" and {len(down) - NAMED} more" if len(down) > NAMED else ""
            text += f"; {len(down)} {reason}: {named}{more}"
        return text

    def readiness(self, discovery_synced: bool) -> tuple[bool, str]:
        """(ready, why): ready once the last scrape cycle completed recently and discovery has
        synced; a loop stuck for three intervals past its timeout is not ready."""
        if not discovery_synced:
            return False, "not ready: no scrape cycle has completed since Kubernetes pod discovery synced"
        if self.last_cycle_end is None:
            return False, "not ready: first scrape cycle not finished"
        age = self.clock() - self.last_cycle_end
        if age > 3 * self.interval + self.timeout:
            return False, f"not ready: last scrape cycle finished {age:.0f}s ago (interval {self.interval:g}s); {self.summary()}"
        return True, f"ready: {self.summary()}"


def startup_line(args, version: str) -> str:
    """What the exporter was asked to do, in one line: where it listens, what it discovers, how often."""
    sources = []
    if args.target:
        sources.append(f"{len(args.target)} static target(s)")
    if args.targets_file:
        sources.append(f"targets file {args.targets_file}")
    if args.kubernetes:
        namespaces = ", ".join(args.kubernetes_namespace) or "all namespaces"
        sources.append(f"Kubernetes pods ({namespaces})")
    host, port = args.listen
    return (f"meshobs exporter {version} listening on {host}:{port} (/metrics, /healthz, /readyz); "
            f"targets from {' and '.join(sources)}, shard {args.shard}; scraping every {args.scrape_interval:g}s, "
            f"timeout {args.scrape_timeout:g}s")
