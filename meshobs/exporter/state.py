"""Exporter state: reset-safe counters per workload, burst detection, certificate expiry.

Counters are kept per workload (mesh, namespace, workload), not per pod: each target's raw
value is turned into deltas (a value below the last one is a proxy restart, and the new value
is the delta), and the deltas are added to the workload's totals. A pod going away therefore
leaves its counts in the totals, and the series stay monotonic across restarts and churn.
State is bounded: one small record per live target, and at most `max_workloads` workloads. A
workload whose targets are all gone stops being exported at once (its series end with its pods)
but is remembered for `grace` seconds, so that a workload whose pods come back carries on
counting; remembered ones make room for new workloads, oldest first. Workloads beyond the cap
are not scraped, and counted in `dropped_workloads` at every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshobs.exporter.normalize import DENIED, FAILURES, Key, Reading
from meshobs.exporter.targets import Target

SCRAPE_ERROR_REASONS = ("timeout", "refused", "too_large", "bad_payload", "http_status")
MAX_WORKLOADS = 5000  # default of --max-workloads


@dataclass(frozen=True)
class BurstPolicy:
    """A burst is a denial rate over one scrape interval at or above `absolute` per second, or
    above `factor` x the workload's own baseline (an hour-long moving average) and at least
    `minimum` per second. It ends when neither holds, with the absolute threshold halved so that
    a rate hovering at the threshold does not flap."""

    absolute: float = 1.0
    factor: float = 5.0
    minimum: float = 0.05
    baseline_seconds: float = 3600.0


@dataclass(frozen=True)
class Event:
    kind: str
    record: dict


@dataclass
class TargetState:
    raw: dict[Key, float] = field(default_factory=dict)
    certs: dict[str, float] = field(default_factory=dict)
    up: bool = False
    duration: float = 0.0


@dataclass
class WorkloadState:
    totals: dict[Key, float] = field(default_factory=dict)
    scrape_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCRAPE_ERROR_REASONS, 0))
    reasons_seen: set[str] | None = None
    burst: bool = False
    bursts: int = 0
    baseline: float | None = None  # learnt from the first measured rate on
    last_denied: float | None = None
    last_time: float = 0.0
    certs_flagged: set[str] = field(default_factory=set)
    orphan_since: float | None = None


class State:
    def __init__(self, burst: BurstPolicy = BurstPolicy(), cert_window: float = 7 * 86400, grace: float = 600.0,
                 max_workloads: int = MAX_WORKLOADS):
        self.burst_policy = burst
        self.cert_window = cert_window
        self.grace = grace
        self.max_workloads = max_workloads
        self.dropped_workloads = 0
        self.targets: dict[Target, TargetState] = {}
        self.workloads: dict[tuple[str, str, str], WorkloadState] = {}

    def _workload(self, target: Target) -> WorkloadState:
        workload = self.workloads.get(target.workload_key)
        if workload is None:
            workload = self.workloads[target.workload_key] = WorkloadState()
        return workload

    def observe(self, target: Target, reading: Reading, duration: float) -> None:
        """A successful scrape of `target`."""
        state = self.targets.setdefault(target, TargetState())
        workload = self._workload(target)
        for key, value in reading.counters.items():
            last = state.raw.get(key, 0.0)
            delta = value if value < last else value - last  # below the last value: the proxy restarted
            workload.totals[key] = workload.totals.get(key, 0.0) + delta
            state.raw[key] = value
        state.certs = reading.certs
        state.up, state.duration = True, duration

    def failed(self, target: Target, reason: str, duration: float) -> None:
        state = self.targets.setdefault(target, TargetState())
        state.up, state.duration = False, duration
        self.count_error(target, reason)

    def count_error(self, target: Target, reason: str) -> None:
        """An error of one of the target's requests that did not fail the scrape (its /certs)."""
        self._workload(target).scrape_errors[reason] += 1

    def retain(self, targets: set[Target], now: float) -> set[Target]:
        """The targets to scrape this cycle: those of at most `max_workloads` workloads (known
        ones first). Forget targets no longer discovered; forget orphaned workloads after `grace`,
        or earlier, oldest first, to make room for live ones."""
        live = {t.workload_key for t in targets}
        admitted = {key for key in live if key in self.workloads}
        for key in sorted(live - admitted):
            if len(admitted) >= self.max_workloads:
                break
            admitted.add(key)
        self.dropped_workloads += len(live) - len(admitted)
        kept = {t for t in targets if t.workload_key in admitted}
        for gone in set(self.targets) - kept:
            del self.targets[gone]
        orphans = []
        for key, workload in list(self.workloads.items()):
            if key in admitted:
                workload.orphan_since = None
                continue
            if workload.orphan_since is None:
                workload.orphan_since = now
            if now - workload.orphan_since > self.grace:
                del self.workloads[key]
            else:
                orphans.append((workload.orphan_since, key))
        for _, key in sorted(orphans)[:max(0, len(admitted) + len(orphans) - self.max_workloads)]:
            del self.workloads[key]
        return kept

    def exported(self) -> list[tuple[tuple[str, str, str], WorkloadState]]:
        """The workloads with live targets, in label order: an orphaned one is no longer exported."""
        return sorted((key, w) for key, w in self.workloads.items() if w.orphan_since is None)

    def certs(self, key: tuple[str, str, str]) -> dict[str, float]:
        """Earliest expiry per kind over the workload's live targets."""
        return self.certs_by_workload().get(key, {})

    def certs_by_workload(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """`certs` of every workload, in one pass over the targets (not one per workload)."""
        out: dict[tuple[str, str, str], dict[str, float]] = {}
        for target, state in self.targets.items():
            found = out.setdefault(target.workload_key, {})
            for kind, ts in state.certs.items():
                found[kind] = min(found.get(kind, ts), ts)
        return out

    def end_cycle(self, now: float) -> list[Event]:
        """Evaluate bursts, new failure reasons and certificate windows after a scrape cycle."""
        events: list[Event] = []
        certs = self.certs_by_workload()
        for key, workload in self.workloads.items():
            if workload.orphan_since is not None:
                continue
            labels = dict(zip(("mesh", "namespace", "workload"), key))
            events += self._bursts(workload, labels, now)
            events += self._new_reasons(workload, labels)
            events += self._cert_window(workload, labels, certs.get(key, {}), now)
        return events

    def _bursts(self, workload: WorkloadState, labels: dict, now: float) -> list[Event]:
        denied = workload.totals.get((DENIED, ""), 0.0)
        last, last_time = workload.last_denied, workload.last_time
        workload.last_denied, workload.last_time = denied, now
        if last is None or now <= last_time:
            return []
        rate = (denied - last) / (now - last_time)
        policy = self.burst_policy
        if workload.baseline is None:
            # start from the first rate: steady traffic must not look like a burst over a zero baseline
            workload.baseline = rate
        # from a zero baseline only the absolute threshold counts: one stray denial is no burst
        relative = workload.baseline > 0 and rate >= policy.minimum and rate > policy.factor * workload.baseline
        absolute = policy.absolute / 2 if workload.burst else policy.absolute
        active = rate >= absolute or relative
        if not active:
            alpha = min(1.0, (now - last_time) / policy.baseline_seconds)
            workload.baseline += alpha * (rate - workload.baseline)
        if active == workload.burst:
            return []
        workload.burst = active
        if active:
            workload.bursts += 1
            return [Event("authz_burst_started", {**labels, "denied_per_second": round(rate, 3),
                                                  "baseline_per_second": round(workload.baseline, 3)})]
        return [Event("authz_burst_ended", {**labels, "denied_per_second": round(rate, 3)})]

    @staticmethod
    def _new_reasons(workload: WorkloadState, labels: dict) -> list[Event]:
        failing = {reason for (name, reason), value in workload.totals.items() if name == FAILURES and value > 0}
        if workload.reasons_seen is None:
            # the first look at a workload sets what is known; only later reasons are news
            workload.reasons_seen = failing
            return []
        new = sorted(failing - workload.reasons_seen)
        workload.reasons_seen |= failing
        return [Event("tls_failure_new_reason", {**labels, "reason": reason,
                                                 "failures": workload.totals[(FAILURES, reason)]}) for reason in new]

    def _cert_window(self, workload: WorkloadState, labels: dict, certs: dict[str, float], now: float) -> list[Event]:
        events = []
        for kind, expires_at in sorted(certs.items()):
            inside = expires_at - now < self.cert_window
            if inside and kind not in workload.certs_flagged:
                workload.certs_flagged.add(kind)
                events.append(Event("cert_expiring", {**labels, "cert": kind, "expires_at": int(expires_at),
                                                      "seconds_left": int(expires_at - now)}))
            elif not inside:
                workload.certs_flagged.discard(kind)
        return events
