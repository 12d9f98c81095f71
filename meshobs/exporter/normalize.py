"""Turn one scrape of a sidecar into meshobs numbers, by the mesh's `ProxyMetrics` table
(meshobs/meshes/<mesh>.py says what each mesh's proxy exposes; this module only applies it)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from meshobs.exporter.parse import PayloadError, Sample
from meshobs.meshes import DIALECTS as MESH_DIALECTS
from meshobs.meshes.ztunnel_proxy import ZTUNNEL
from meshobs.meshes.proxy import (  # re-exported: the exporter's modules speak these names
    ALLOWED, CERT_EXPIRY, CERT_NOT_BEFORE, DENIED, FAILURES, HANDSHAKES, PLAINTEXT, REASONS, Key, ProxyMetrics,
)

__all__ = [
    "ALLOWED", "CERT_EXPIRY", "CERT_NOT_BEFORE", "DENIED", "FAILURES", "HANDSHAKES", "PLAINTEXT", "REASONS", "Key",
    "DIALECTS", "ROLES", "Reading", "proxy_metrics", "admin_certs", "cert_kind", "certs_from_admin", "normalize",
]

DIALECTS: dict[str, ProxyMetrics] = {name: mesh.proxy for name, mesh in MESH_DIALECTS.items()}
# Proxies that are not a mesh's sidecar, by the target's role (a waypoint is read as a sidecar).
ROLES: dict[str, ProxyMetrics] = {"ztunnel": ZTUNNEL}


def proxy_metrics(target) -> ProxyMetrics:
    """How to read `target` (a `targets.Target`): its role's table, else its mesh's sidecar's."""
    return ROLES.get(target.role) or DIALECTS[target.mesh]

# A ztunnel reports for the pods of its node (110 by default, 250 at most in practice) and keeps
# the series of pods gone since its start: more workloads than this from one proxy are refused.
MAX_SPEAKERS = 1000

# Envoy and linkerd2-proxy counters are unsigned 64-bit integers: anything else is not a counter.
MAX_COUNTER = float(2**64)

_CA_NAME = re.compile(r"(^|[_.-])ca([_.-]|$)|rootca", re.IGNORECASE)


def cert_kind(name: str) -> str:
    """`ca` for a trust anchor (Envoy `unnamed_ca_cert_<hash>`, Istio `ROOTCA`), else `leaf`."""
    return "ca" if _CA_NAME.search(name) else "leaf"


@dataclass
class Reading:
    """One target's scrape, normalized: raw counter values (the proxy's own, may reset),
    certificate expiry timestamps by kind and, where the source tells, the notBefore of the same
    certificates."""

    counters: dict[Key, float]
    certs: dict[str, float]
    not_before: dict[str, float] = field(default_factory=dict)
    # a proxy reporting for other workloads (`ProxyMetrics.speaks_for`): their counters, by the
    # (namespace, workload) the proxy names, and how many workloads beyond MAX_SPEAKERS it named
    by_workload: dict[tuple[str, str], dict[Key, float]] = field(default_factory=dict)
    refused: int = 0


def _counter_value(sample: Sample) -> float:
    if not 0.0 <= sample.value <= MAX_COUNTER:  # NaN fails this too
        # one poisoned value would stay in the workload's totals for ever
        raise PayloadError(f"counter {sample.name[:100]} has value {sample.value!r}: "
                           f"a counter is a finite number from 0 to 2^64")
    return sample.value


def normalize(dialect: ProxyMetrics, samples: list[Sample]) -> Reading:
    if dialect.speaks_for is not None:
        return _by_speaker(dialect, samples)
    counters: dict[Key, float] = {rule.key: 0.0 for rule in dialect.counters}
    certs: dict[str, float] = {}
    for sample in samples:
        rules, cert_families = dialect.rules_for(sample.name)
        for rule in rules:
            if rule.match(sample.labels):
                counters[rule.key] += _counter_value(sample)
        for family in cert_families:
            name = family.cert_name(sample)
            if name is not None and 0 < sample.value < math.inf:
                kind = cert_kind(name)
                certs[kind] = min(certs.get(kind, sample.value), sample.value)
    for reason in REASONS:
        counters.setdefault((FAILURES, reason), 0.0)
    return Reading(counters, certs)


def _by_speaker(dialect: ProxyMetrics, samples: list[Sample]) -> Reading:
    """A proxy reporting for other workloads (`ProxyMetrics.speaks_for`): counters per workload
    it names, no certificates of its own."""
    # every workload's counters start from the same zeros: built once per scrape, copied per workload
    fresh: dict[Key, float] = {rule.key: 0.0 for rule in dialect.counters}
    if dialect.reports(FAILURES):
        for reason in REASONS:
            fresh.setdefault((FAILURES, reason), 0.0)
    by_workload: dict[tuple[str, str], dict[Key, float]] = {}
    refused: set[tuple[str, str]] = set()
    for sample in samples:
        rules, _ = dialect.rules_for(sample.name)
        for rule in rules:
            if rule.match(sample.labels):
                value = _counter_value(sample)
                who = dialect.speaks_for(sample.labels)
                if who is None:
                    continue
                into = by_workload.get(who)
                if into is None:
                    if len(by_workload) >= MAX_SPEAKERS:
                        refused.add(who)
                        continue
                    into = by_workload[who] = dict(fresh)
                into[rule.key] += value
    return Reading({}, {}, by_workload=by_workload, refused=len(refused))


def admin_certs(body: bytes) -> tuple[dict[str, float], dict[str, float]]:
    """Expiry and notBefore by kind from the body of Envoy's /certs (see `certs_from_admin`);
    anything else, however deep or odd, raises `PayloadError`."""
    try:
        document = json.loads(body.decode("utf-8"))  # Envoy writes UTF-8; no guessing of UTF-16/32
    except RecursionError:
        raise PayloadError("/certs: JSON nested too deep") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise PayloadError(f"/certs: not JSON: {str(exc)[:200]}") from None
    return certs_from_admin(document)


def _admin_time(cert: dict, field: str) -> float | None:
    raw = cert.get(field)
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError, OverflowError):
        raise PayloadError(f"/certs: {field} {str(raw)[:64]!r} is not an RFC 3339 time") from None


def certs_from_admin(document: object) -> tuple[dict[str, float], dict[str, float]]:
    """Expiry and notBefore by kind from Envoy's /certs JSON document, of the certificate of each
    kind that expires first (`expiration_time` and `valid_from` are RFC 3339, exact to the
    second); a document of another shape raises `PayloadError`."""
    entries = document.get("certificates", []) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PayloadError('/certs: expected {"certificates": [...]}')
    certs: dict[str, float] = {}
    not_before: dict[str, float] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise PayloadError("/certs: a certificates entry is not an object")
        # the leaf is the first element of the chain; the rest are intermediates
        for kind, member in (("leaf", "cert_chain"), ("ca", "ca_cert")):
            chain = entry.get(member) or []
            if not isinstance(chain, list) or not all(isinstance(cert, dict) for cert in chain):
                raise PayloadError(f"/certs: {member} is not a list of objects")
            for cert in chain[:1] if kind == "leaf" else chain:
                expires = _admin_time(cert, "expiration_time")
                if expires is None or expires >= certs.get(kind, math.inf):
                    continue
                certs[kind] = expires
                valid_from = _admin_time(cert, "valid_from")
                if valid_from is None:
                    not_before.pop(kind, None)
                else:
                    not_before[kind] = valid_from
    return certs, not_before
