"""Turn one scrape of a sidecar into meshobs numbers, by the mesh's `ProxyMetrics` table
(meshobs/meshes/<mesh>.py says what each mesh's proxy exposes; this module only applies it)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime

from meshobs.exporter.parse import PayloadError, Sample
from meshobs.meshes import DIALECTS as MESH_DIALECTS
from meshobs.meshes.proxy import (  # re-exported: the exporter's modules speak these names
    ALLOWED, CERT_EXPIRY, DENIED, FAILURES, HANDSHAKES, PLAINTEXT, REASONS, Key, ProxyMetrics,
)

__all__ = [
    "ALLOWED", "CERT_EXPIRY", "DENIED", "FAILURES", "HANDSHAKES", "PLAINTEXT", "REASONS", "Key",
    "DIALECTS", "Reading", "admin_certs", "cert_kind", "certs_from_admin", "normalize",
]

DIALECTS: dict[str, ProxyMetrics] = {name: mesh.proxy for name, mesh in MESH_DIALECTS.items()}

# Envoy and linkerd2-proxy counters are unsigned 64-bit integers: anything else is not a counter.
MAX_COUNTER = float(2**64)

_CA_NAME = re.compile(r"(^|[_.-])ca([_.-]|$)|rootca", re.IGNORECASE)


def cert_kind(name: str) -> str:
    """`ca` for a trust anchor (Envoy `unnamed_ca_cert_<hash>`, Istio `ROOTCA`), else `leaf`."""
    return "ca" if _CA_NAME.search(name) else "leaf"


@dataclass
class Reading:
    """One target's scrape, normalized: raw counter values (the proxy's own, may reset) and
    certificate expiry timestamps by kind."""

    counters: dict[Key, float]
    certs: dict[str, float]


def normalize(dialect: ProxyMetrics, samples: list[Sample]) -> Reading:
    counters: dict[Key, float] = {rule.key: 0.0 for rule in dialect.counters}
    fallbacks: dict[Key, float] = {}
    primary_seen: set[Key] = set()
    certs: dict[str, float] = {}
    for sample in samples:
        rules, cert_families = dialect.rules_for(sample.name)
        for rule in rules:
            if rule.match(sample.labels):
                if not 0.0 <= sample.value <= MAX_COUNTER:  # NaN fails this too
                    # one poisoned value would stay in the workload's totals for ever
                    raise PayloadError(f"counter {sample.name[:100]} has value {sample.value!r}: "
                                       f"a counter is a finite number from 0 to 2^64")
                if rule.fallback:
                    fallbacks[rule.key] = fallbacks.get(rule.key, 0.0) + sample.value
                else:
                    counters[rule.key] += sample.value
                    primary_seen.add(rule.key)
        for family in cert_families:
            name = family.cert_name(sample)
            if name is not None and 0 < sample.value < math.inf:
                kind = cert_kind(name)
                certs[kind] = min(certs.get(kind, sample.value), sample.value)
    for key, value in fallbacks.items():
        if key not in primary_seen:
            counters[key] = value
    for reason in REASONS:
        counters.setdefault((FAILURES, reason), 0.0)
    return Reading(counters, certs)


def admin_certs(body: bytes) -> dict[str, float]:
    """Expiry by kind from the body of Envoy's /certs; anything else, however deep or odd, raises
    `PayloadError`."""
    try:
        document = json.loads(body.decode("utf-8"))  # Envoy writes UTF-8; no guessing of UTF-16/32
    except RecursionError:
        raise PayloadError("/certs: JSON nested too deep") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise PayloadError(f"/certs: not JSON: {str(exc)[:200]}") from None
    return certs_from_admin(document)


def certs_from_admin(document: object) -> dict[str, float]:
    """Expiry by kind from Envoy's /certs JSON document (`expiration_time` is RFC 3339, exact to
    the second); a document of another shape raises `PayloadError`."""
    entries = document.get("certificates", []) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PayloadError('/certs: expected {"certificates": [...]}')
    certs: dict[str, float] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise PayloadError("/certs: a certificates entry is not an object")
        # the leaf is the first element of the chain; the rest are intermediates
        for kind, field in (("leaf", "cert_chain"), ("ca", "ca_cert")):
            chain = entry.get(field) or []
            if not isinstance(chain, list) or not all(isinstance(cert, dict) for cert in chain):
                raise PayloadError(f"/certs: {field} is not a list of objects")
            for cert in chain[:1] if kind == "leaf" else chain:
                raw = cert.get("expiration_time")
                if not raw:
                    continue
                try:
                    ts = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
                except (AttributeError, ValueError, OverflowError):
                    raise PayloadError(f"/certs: expiration_time {str(raw)[:64]!r} is not an RFC 3339 time") from None
                certs[kind] = min(certs.get(kind, ts), ts)
    return certs
