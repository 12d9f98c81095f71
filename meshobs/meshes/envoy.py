"""Envoy facts shared by the meshes that run Envoy sidecars (Istio, Consul): how its listener
TLS and RBAC stats map to meshobs series (see envoy-security-signals.md)."""

import re

from meshobs.meshes.proxy import ALLOWED, DENIED, FAILURES, HANDSHAKES, PLAINTEXT, CertFamily, Rule

LISTENER_SSL = "envoy_listener_ssl_"
# Envoy's listener ssl counters (see envoy-security-signals.md): `handshake` counts successes only;
# plaintext to a TLS port shows as `connection_error`. That connection was refused, nothing was
# served: a TLS failure (not_tls), never plaintext traffic.
ENVOY_TLS = (
    Rule(LISTENER_SSL + "handshake", (HANDSHAKES, "")),
    Rule(LISTENER_SSL + "fail_verify_no_cert", (FAILURES, "no_client_cert")),
    Rule(LISTENER_SSL + "fail_verify_error", (FAILURES, "untrusted_cert")),
    Rule(LISTENER_SSL + "fail_verify_san", (FAILURES, "san_mismatch")),
    Rule(LISTENER_SSL + "connection_error", (FAILURES, "not_tls")),
    # a handshake that succeeded without a client certificate: TLS, but not mutual (a listener
    # with require_client_certificate but no validation context silently accepts these)
    Rule(LISTENER_SSL + "no_certificate", (PLAINTEXT, "")),
    Rule(LISTENER_SSL + "fail_verify_cert_hash", (FAILURES, "other")),
)
# Standard Envoy tags (Consul): one family per decision; L7 http RBAC and L4 network RBAC
# (Consul intentions use the `connect_authz` prefix). Shadow (dry-run) decisions are other names.
ENVOY_RBAC = (
    Rule("envoy_http_rbac_allowed", (ALLOWED, "")),
    Rule("envoy_http_rbac_denied", (DENIED, "")),
    Rule("envoy_rbac_allowed", (ALLOWED, "")),
    Rule("envoy_rbac_denied", (DENIED, "")),
)
ENVOY_CERTS = CertFamily("envoy_listener_ssl_certificate_expiration_unix_time_seconds", ("envoy_tls_certificate",))


def admin_stats_filter(*extra: str) -> str:
    """Envoy's `/stats/prometheus?filter=` regex for the families above (plus `extra`), so the
    proxy sends only those. Envoy matches it against its internal stat names, before tags are
    extracted (`listener.<address>.ssl.handshake`, `http.<prefix>.rbac.denied`), not against
    the Prometheus names: each family is written here in that form, from the same tables."""
    ssl = sorted({rule.family.removeprefix(LISTENER_SSL) for rule in ENVOY_TLS})
    decisions = sorted({rule.family.rsplit("_", 1)[1] for rule in ENVOY_RBAC})
    cert = ENVOY_CERTS.family.removeprefix(LISTENER_SSL).split("_", 1)  # certificate, expiration_unix_...
    return "|".join((
        rf"^listener\..*\.ssl\.(?:{'|'.join(map(re.escape, ssl))})$",
        rf"^listener\..*\.ssl\.{cert[0]}\..*\.{cert[1]}$",
        rf"(?:^|\.)rbac\.(?:{'|'.join(decisions)})$",
        *extra,
    ))
