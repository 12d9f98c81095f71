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

import logging
from dataclasses import dataclass, field
from typing import Callable

from meshobs.config import Config, duration_seconds
from meshobs.exporter.normalize import DENIED, FAILURES, MAX_SPEAKERS, Key, Reading
from meshobs.exporter.pods import is_name, shown
from meshobs.meshes import DIALECTS as MESH_DIALECTS
from meshobs.exporter.targets import Target

log = logging.getLogger(__name__)

SCRAPE_ERROR_REASONS = ("timeout", "refused", "too_large", "bad_payload", "http_status")
# Why a workload a ztunnel named was not counted: not a Kubernetes name (or `unknown`), no
# captured pod of that name on the ztunnel's node, more than normalize.MAX_SPEAKERS workloads
# from one ztunnel. (No room under --max-workloads is counted in `dropped_workloads`.)
CLAIM_REFUSALS = ("bad_name", "not_on_node", "too_many")
# (node, namespace, name as ztunnel reports it) -> the meshobs workload of the captured pod it
# is, or None if there is none on that node
Resolve = Callable[[str, str, str], "str | None"]
MAX_WORKLOADS = 5000  # default of --max-workloads


@dataclass(frozen=True)
class BurstPolicy:
    """A burst is a denial rate over one scrape interval at or above `absolute` per second, or
    above `factor` x the workload's own baseline (a moving average over `baseline_seconds`) and
    at least `minimum` per second. It ends when neither holds, with the absolute threshold halved
    so that a rate hovering at the threshold does not flap. The numbers are meshobs.yaml's
    `alerts.unauthorized_burst`, as the burst alert uses them."""

    absolute: float
    factor: float
    minimum: float
    baseline_seconds: float

    @classmethod
    def from_config(cls, cfg: Config = Config()) -> "BurstPolicy":
        burst = cfg.alerts.unauthorized_burst
        return cls(burst.absolute_denials_per_second, burst.factor, burst.min_denials_per_second,
                   duration_seconds(burst.baseline_window))


@dataclass(frozen=True)
class CertPolicy:
    """When a certificate is worth an event, by the rule of the certificate alert's warning: a CA
    expiring within `ca_window` seconds; a leaf with less than `leaf_fraction` of its lifetime
    left (a failed rotation), the lifetime measured from its notBefore where known, else the
    mesh's default leaf lifetime. A leaf at its normal age never is: meshes renew at 50-90%."""

    ca_window: float
    leaf_fraction: float

    @classmethod
    def from_config(cls, cfg: Config = Config()) -> "CertPolicy":
        expiry = cfg.alerts.cert_expiry
        return cls(duration_seconds(expiry.warning), expiry.leaf_warning_fraction)

    def due(self, kind: str, expires_at: float, not_before: float | None, mesh: str, now: float) -> bool:
        left = expires_at - now
        if kind != "leaf":
            return left < self.ca_window
        if not_before is not None:
            lifetime = expires_at - not_before
        else:
            lifetime = duration_seconds(MESH_DIALECTS[mesh].leaf_lifetime) if mesh in MESH_DIALECTS else None
        if not lifetime or lifetime <= 0:
            return left <= 0  # no lifetime to measure against: only an expired leaf is news
        return left < self.leaf_fraction * lifetime


@dataclass(frozen=True)
class Event:
    kind: str
    record: dict


@dataclass
class TargetState:
    raw: dict[Key, float] = field(default_factory=dict)
    certs: dict[str, float] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    up: bool = False
    duration: float = 0.0
    # a proxy speaking for other workloads (a ztunnel): raw counter values per workload it
    # named, the workloads it spoke for at its last scrape, and what it was refused (counted once)
    claimed: dict[tuple[str, str, str], dict[Key, float]] = field(default_factory=dict)
    speaks_for: set[tuple[str, str, str]] = field(default_factory=set)
    refusals: set[tuple[str, str, str]] = field(default_factory=set)
    too_many: int = 0


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
    def __init__(self, burst: BurstPolicy | None = None, certs: CertPolicy | None = None, grace: float = 600.0,
                 max_workloads: int = MAX_WORKLOADS):
        self.burst_policy = burst or BurstPolicy.from_config()
        self.cert_policy = certs or CertPolicy.from_config()
        self.grace = grace
        self.max_workloads = max_workloads
        self.dropped_workloads = 0
        self.targets: dict[Target, TargetState] = {}
        self.workloads: dict[tuple[str, str, str], WorkloadState] = {}
        # with Kubernetes discovery: checks a ztunnel's claims against the pods of its node
        self.resolve: Resolve | None = None
        self.refused_claims = dict.fromkeys(CLAIM_REFUSALS, 0)

    def _workload(self, key: tuple[str, str, str]) -> WorkloadState:
        """The workload's record, created if new; observed now, so not orphaned."""
        workload = self.workloads.get(key)
        if workload is None:
            workload = self.workloads[key] = WorkloadState()
        workload.orphan_since = None
        return workload

    def _target(self, target: Target) -> TargetState:
        """The target's record, created if new (not built on every scrape to be thrown away)."""
        state = self.targets.get(target)
        if state is None:
            state = self.targets[target] = TargetState()
        return state

    def observe(self, target: Target, reading: Reading, duration: float) -> None:
        """A successful scrape of `target`."""
        state = self._target(target)
        _add(self._workload(target.workload_key), state.raw, reading.counters)
        if reading.by_workload or state.claimed or reading.refused:
            self._claims(target, state, reading)
        state.certs, state.not_before = reading.certs, reading.not_before
        state.up, state.duration = True, duration

    def _claims(self, target: Target, state: TargetState, reading: Reading) -> None:
        """Add a ztunnel's counters to the workloads it speaks for, those it may speak for."""
        speaks: set[tuple[str, str, str]] = set()
        for (namespace, name), counters in sorted(reading.by_workload.items()):
            workload, refusal = self._claimed(target, namespace, name)
            if workload is None:
                self._refuse(target, state, (namespace, name), refusal)
                continue
            key = (target.mesh, namespace, workload)
            if key not in self.workloads and len(self.workloads) >= self.max_workloads:
                self.dropped_workloads += 1
                continue
            speaks.add(key)
            _add(self._workload(key), state.claimed.setdefault(key, {}), counters)
        if reading.refused > state.too_many:
            self.refused_claims["too_many"] += reading.refused - state.too_many
            log.warning("%s names more than the %d workloads a ztunnel may speak for: %d not counted",
                        target.instance, MAX_SPEAKERS, reading.refused)
        state.too_many = reading.refused
        state.speaks_for = speaks
        # the raw values of workloads not named this time are kept (a series that comes back
        # must not count twice), within the same bound
        if len(state.claimed) > MAX_SPEAKERS:
            state.claimed = {key: raw for key, raw in state.claimed.items() if key in speaks}

    def _claimed(self, target: Target, namespace: str, name: str) -> tuple[str | None, str]:
        if not is_name(namespace) or not is_name(name) or "unknown" in (namespace, name):
            return None, "bad_name"
        if self.resolve is None:  # static targets: no pod list to check against
            return name, ""
        workload = self.resolve(target.node, namespace, name)
        return (workload, "") if workload else (None, "not_on_node")

    def _refuse(self, target: Target, state: TargetState, claim: tuple[str, str], reason: str) -> None:
        marker = (*claim, reason)
        if marker in state.refusals or len(state.refusals) >= MAX_SPEAKERS:
            return
        state.refusals.add(marker)
        self.refused_claims[reason] += 1
        log.warning("%s (node %s) speaks for %s/%s: not counted (%s)", target.instance, shown(target.node),
                    shown(claim[0]), shown(claim[1]), reason)

    def failed(self, target: Target, reason: str, duration: float) -> None:
        state = self._target(target)
        state.up, state.duration = False, duration
        self.count_error(target, reason)

    def count_error(self, target: Target, reason: str) -> None:
        """An error of one of the target's requests that did not fail the scrape (its /certs)."""
        self._workload(target.workload_key).scrape_errors[reason] += 1

    def retain(self, targets: set[Target], now: float) -> set[Target]:
        """The targets to scrape this cycle: those of at most `max_workloads` workloads (known
        ones first). Forget targets no longer discovered; forget orphaned workloads after `grace`,
        or earlier, oldest first, to make room for live ones."""
        live = {t.workload_key for t in targets}
        # the workloads a live ztunnel spoke for at its last scrape are live too
        live |= {key for t in targets if t in self.targets for key in self.targets[t].speaks_for}
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

    def cert_times(self) -> dict[tuple[str, str, str], dict[str, tuple[float, float | None]]]:
        """Per workload and kind, the (expiry, notBefore or None) of its certificate that expires
        first, in one pass over the targets (not one per workload)."""
        out: dict[tuple[str, str, str], dict[str, tuple[float, float | None]]] = {}
        for target, state in self.targets.items():
            found = out.setdefault(target.workload_key, {})
            for kind, ts in state.certs.items():
                if kind not in found or ts < found[kind][0]:
                    found[kind] = (ts, state.not_before.get(kind))
        return out

    def end_cycle(self, now: float) -> list[Event]:
        """Evaluate bursts, new failure reasons and certificate windows after a scrape cycle."""
        events: list[Event] = []
        certs = self.cert_times()
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

    def _cert_window(self, workload: WorkloadState, labels: dict, certs: dict[str, tuple[float, float | None]],
                     now: float) -> list[Event]:
        events = []
        for kind, (expires_at, not_before) in sorted(certs.items()):
            due = self.cert_policy.due(kind, expires_at, not_before, labels["mesh"], now)
            if due and kind not in workload.certs_flagged:
                workload.certs_flagged.add(kind)
                record = {**labels, "cert": kind, "expires_at": int(expires_at), "seconds_left": int(expires_at - now)}
                if not_before is not None:
                    record["not_before"] = int(not_before)
                events.append(Event("cert_expiring", record))
            elif not due:
                workload.certs_flagged.discard(kind)
        return events


def _add(workload: WorkloadState, raw: dict[Key, float], counters: dict[Key, float]) -> None:
    """Add a target's new raw values to the workload's totals as deltas since `raw`."""
    for key, value in counters.items():
        last = raw.get(key, 0.0)
        delta = value if value < last else value - last  # below the last value: the proxy restarted
        workload.totals[key] = workload.totals.get(key, 0.0) + delta
        raw[key] = value
