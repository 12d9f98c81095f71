"""Turn one scrape of a sidecar into meshobs numbers, by the mesh's `ProxyMetrics` table
(meshobs/meshes/<mesh>.py says what each mesh's proxy exposes; this module only applies it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from meshobs.exporter.parse import Sample
from meshobs.meshes import DIALECTS as MESH_DIALECTS
from meshobs.meshes.proxy import (  # re-exported: the exporter's modules speak these names
    ALLOWED, CERT_EXPIRY, CERT_NOT_BEFORE, DENIED, FAILURES, HANDSHAKES, PLAINTEXT, REASONS, Key, ProxyMetrics,
)

__all__ = [
    "ALLOWED", "CERT_EXPIRY", "CERT_NOT_BEFORE", "DENIED", "FAILURES", "HANDSHAKES", "PLAINTEXT", "REASONS", "Key",
    "DIALECTS", "Reading", "cert_kind", "certs_from_admin", "normalize",
]

DIALECTS: dict[str, ProxyMetrics] = {name: mesh.proxy for name, mesh in MESH_DIALECTS.items()}

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


def normalize(dialect: ProxyMetrics, samples: list[Sample]) -> Reading:
    counters: dict[Key, float] = {rule.key: 0.0 for rule in dialect.counters}
    fallbacks: dict[Key, float] = {}
    primary_seen: set[Key] = set()
    certs: dict[str, float] = {}
    for sample in samples:
        rules, cert_families = dialect.rules_for(sample.name)
        for rule in rules:
            if rule.match(sample.labels):
                if rule.fallback:
                    fallbacks[rule.key] = fallbacks.get(rule.key, 0.0) + sample.value
                else:
                    counters[rule.key] += sample.value
                    primary_seen.add(rule.key)
        for family in cert_families:
            name = family.cert_name(sample)
            if name is not None and sample.value > 0:
                kind = cert_kind(name)
                certs[kind] = min(certs.get(kind, sample.value), sample.value)
    for key, value in fallbacks.items():
        if key not in primary_seen:
            counters[key] = value
    for reason in REASONS:
        counters.setdefault((FAILURES, reason), 0.0)
    return Reading(counters, certs)


def certs_from_admin(document: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Expiry and notBefore by kind from Envoy's /certs JSON, of the certificate of each kind that
    expires first (`expiration_time` and `valid_from` are RFC 3339, exact to the second)."""
    from datetime import datetime

    def timestamp(raw: str | None) -> float | None:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() if raw else None

    certs: dict[str, float] = {}
    not_before: dict[str, float] = {}
    for entry in document.get("certificates", []):
        # the leaf is the first element of the chain; the rest are intermediates
        for kind, chain in (("leaf", (entry.get("cert_chain") or [])[:1]), ("ca", entry.get("ca_cert") or [])):
            for cert in chain:
                expires = timestamp(cert.get("expiration_time"))
                if expires is None or expires >= certs.get(kind, expires + 1):
                    continue
                certs[kind] = expires
                valid_from = timestamp(cert.get("valid_from"))
                if valid_from is None:
                    not_before.pop(kind, None)
                else:
                    not_before[kind] = valid_from
    return certs, not_before
