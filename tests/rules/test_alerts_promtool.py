"""Every alert of every mesh, run by the real `promtool test rules` on series written in that
mesh's own metric names, both ends of a call present: it fires on the bad cases (gRPC failures,
calls only callers saw, low but real traffic, failed certificate rotation, a sustained attack)
with the documented labels and annotations, and stays silent on the healthy and low-traffic ones
(a leaf certificate at its normal age, one failed request, application 403s, kubelet probes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from meshobs import build, config, signals, yamlfmt
from meshobs.meshes import DIALECTS
from meshobs.render.rules import ALERT_NAMES
from tests.rules import ambient_traffic as amb
from tests.rules.traffic import CLUSTER, MeshTraffic, consul_tags, constant, counter, in_cluster, native_denials, series
from tests.support.ambientdata import ACCOUNTS, FRONTEND, INTRUDER, LEGACY, POSTGRES, WAYPOINT, WEB, L4, _ztunnel_labels
from tests.support.procs import require_binary

CFG = config.Config()
RUNBOOK = CFG.runbook_url_base
NS, SVC = "shop", "checkout"


def runbook_headings() -> set[str]:
    """The section headings of docs/runbooks.md: the anchors the alerts' runbook_url point at."""
    return {line[3:].strip() for line in (Path(__file__).parents[2] / "docs/runbooks.md").read_text().splitlines()
            if line.startswith("## ")}


@pytest.fixture(scope="module")
def rule_files(tmp_path_factory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("rules")
    artefacts = build.render(CFG, DIALECTS.values())
    files: dict[str, list[Path]] = {}
    for path, content in artefacts.items():
        if path.startswith("alerts/"):
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            files.setdefault(path.split("/")[1], []).append(target)
    return files


def _alert(mesh: str, name: str, severity: str, labels: dict, summary: str, description: str) -> dict:
    return {
        "exp_labels": dict({"severity": severity, "mesh": mesh, "cluster": CLUSTER}, **labels),
        "exp_annotations": {"summary": summary, "description": description, "runbook_url": f"{RUNBOOK}{name.lower()}"},
    }


def _case(name: str, input_series: list[dict], eval_time: str, alertname: str, expected: list[dict]) -> dict:
    return {
        "name": name,
        "interval": "1m",
        "input_series": input_series,
        "alert_rule_test": [{"eval_time": eval_time, "alertname": alertname, "exp_alerts": expected}],
    }


WORKLOAD = {"destination_namespace": NS, "destination_workload": SVC}
FAILED = "(5xx, failed gRPC calls, calls no pod answered)"


def _service(t: MeshTraffic) -> tuple[dict, str]:
    labels = t.service_labels(NS, SVC)
    return labels, f"{SVC} in {labels['destination_namespace']}"


def high_error_rate(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshHighErrorRate"
    labels, where = _service(t)

    def fires(percent: str) -> dict:
        return _alert(mesh, name, "critical", labels, f"{title}: {SVC} fails more than 10% of requests",
                      f"{percent} of requests to {where} failed {FAILED} over the last 5m (threshold 10%, at least 20 requests).")

    cases = [
        _case("bad: half the requests answered 503", t.requests(NS, SVC, "200", (5, 20)) + t.requests(NS, SVC, "503", (5, 20)),
              "15m", name, [fires("50%")]),
        # callers alone count the calls no pod answered: 5 answered + 5 unanswered is 50%, not 5 of 15
        _case("bad: half the calls find no healthy pod (only callers record them)",
              t.requests(NS, SVC, "200", (5, 20)) + t.requests(NS, SVC, "503", (5, 20), answered=False), "15m", name,
              [fires("50%")]),
        _case("bad: every pod gone, callers see only 503s", t.requests(NS, SVC, "503", (2, 20), answered=False),
              "15m", name, [fires("100%")]),
        _case("bad: low traffic, 0.1 req/s failing half for 30 minutes",
              t.requests(NS, SVC, "200", (0.05, 30)) + t.requests(NS, SVC, "503", (0.05, 30)), "30m", name, [fires("50%")]),
        _case("healthy", t.requests(NS, SVC, "200", (10, 20)) + t.requests(NS, SVC, "503", (0.1, 20)), "15m", name, []),
        _case("low traffic: a single failed request in 5 minutes",
              t.requests(NS, SVC, "200", (0.02, 20)) + [
                  {**s, "values": "0x15 1x5"} for s in t.requests(NS, SVC, "503", (0, 1))], "20m", name, []),
    ]
    if mesh != "consul":  # Consul's Envoy has no gRPC status in its default stats
        cases.append(_case("bad: gRPC calls failing with status 14 (HTTP 200)",
                           t.requests(NS, SVC, "200", (7, 20), grpc_status="0") + t.requests(NS, SVC, "200", (3, 20), grpc_status="14"),
                           "15m", name, [fires("30%")]))
        cases.append(_case("healthy: gRPC calls all OK", t.requests(NS, SVC, "200", (10, 20), grpc_status="0"), "15m", name, []))
    if mesh == "istio":
        cases += _ambient_error_rate(title, name)
    if mesh == "linkerd":  # the workload is a StatefulSet: no deployment label at all
        st = MeshTraffic(mesh, owner="statefulset")
        cases.append(_case("bad: a StatefulSet answering 503", st.requests(NS, SVC, "200", (5, 20)) + st.requests(NS, SVC, "503", (5, 20)),
                           "15m", name, [fires("50%")]))
    return cases


def _ambient_error_rate(title: str, name: str) -> list[dict]:
    """Istio ambient: an ambient server's requests are counted by its waypoint (`reporter="waypoint"`);
    a sidecar client's request through it is counted by both, and must count once."""
    labels = {"destination_namespace": ACCOUNTS.namespace, "destination_service": ACCOUNTS.name}
    fires = _alert("istio", name, "critical", labels, f"{title}: {ACCOUNTS.name} fails more than 10% of requests",
                   f"50% of requests to {ACCOUNTS.name} in {ACCOUNTS.namespace} failed {FAILED} over the last 5m "
                   "(threshold 10%, at least 20 requests).")
    through = lambda source, code, values: [amb.waypoint(source, ACCOUNTS, code, values)]
    both_ends = lambda code, values: through(FRONTEND, code, values) + [amb.sidecar_caller(FRONTEND, ACCOUNTS, code, values)]
    sidecar_namespace = MeshTraffic("istio").requests(NS, SVC, "200", (10, 20))
    return [
        _case("bad (ambient): half the requests through the waypoint answered 503",
              through(WEB, "200", counter((5, 20))) + through(WEB, "503", counter((5, 20))), "15m", name, [fires]),
        _case("bad (mixed layout): the ambient namespace fails, the sidecar namespace does not; a sidecar client's "
              "requests through the waypoint count once (50%, not 25% or 100%)",
              sidecar_namespace + both_ends("200", counter((5, 20))) + both_ends("503", counter((5, 20))), "15m", name,
              [fires]),
        _case("healthy (ambient): 1% failing through the waypoint",
              through(WEB, "200", counter((10, 20))) + through(WEB, "503", counter((0.1, 20))), "15m", name, []),
        _case("low traffic (ambient): a single failed request through the waypoint in 5 minutes",
              through(WEB, "200", counter((0.02, 20))) + through(WEB, "503", "0x15 1x5"), "20m", name, []),
    ]


def high_latency(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshHighLatencyP99"
    labels, where = _service(t)
    fires = _alert(mesh, name, "warning", dict(labels, quantile="0.99"), f"{title}: {SVC} p99 latency above 1s",
                   f"p99 latency of {where} is 4.96s over the last 5m (threshold 1s).")
    cases = []
    if mesh == "istio":  # an ambient server: its waypoint reports the requests and their latency
        through_waypoint = lambda inputs: [dict(i, series=i["series"].replace('reporter="destination"', 'reporter="waypoint"'))
                                           for i in inputs]
        cases += [
            _case("bad (ambient): slow through the waypoint",
                  through_waypoint(t.requests(NS, SVC, "200", (2, 30)) + t.latency(NS, SVC, 2, 30, slow=True)), "25m", name,
                  [fires]),
            _case("low traffic (ambient): slow but rare through the waypoint",
                  through_waypoint(t.requests(NS, SVC, "200", (0.1, 30)) + t.latency(NS, SVC, 0.1, 30, slow=True)), "25m",
                  name, []),
        ]
    return cases + [
        _case("bad", t.requests(NS, SVC, "200", (2, 30)) + t.latency(NS, SVC, 2, 30, slow=True), "25m", name, [fires]),
        _case("healthy", t.requests(NS, SVC, "200", (2, 30)) + t.latency(NS, SVC, 2, 30, slow=False), "25m", name, []),
        _case("low traffic", t.requests(NS, SVC, "200", (0.1, 30)) + t.latency(NS, SVC, 0.1, 30, slow=True), "25m", name, []),
    ]


def unauthorized_burst(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshUnauthorizedAccessBurst"
    denied = lambda *phases: [t.exporter("meshobs_authz_denied_total", NS, SVC, counter(*phases))]
    description = (f"{SVC} in {NS} denies 2 requests/s by authorization policy over the last 5m, "
                   "more than 5x its 1h baseline or above 1/s.")
    summary = f"{title}: burst of authorization denials at {SVC}"
    fires = _alert(mesh, name, "critical", dict(WORKLOAD, basis="rates"), summary, description)
    relative = _alert(mesh, name, "critical", dict(WORKLOAD, basis="rates"), summary, description.replace("denies 2 ", "denies 0.8 "))
    from_exporter = _alert(mesh, name, "critical", dict(WORKLOAD, basis="exporter"), summary,
                           f"The meshobs exporter saw a burst of authorization denials at {SVC} in {NS} (in the last 5m): "
                           "more than 5x its baseline, or above 1/s.")
    burst_state = lambda values: [t.exporter("meshobs_authz_denied_burst", NS, SVC, values)]
    exporter_sees_none = [t.exporter("meshobs_authz_denied_total", NS, SVC, constant(0, 130)),
                          t.exporter("meshobs_target_up", NS, SVC, constant(1, 130), instance="10.0.0.7:15090")]
    return [
        # the first evaluation after the scrape that saw the burst: no `for` delay
        _case("bad: the exporter's burst state, at once", burst_state("0x5 1x5") + denied((0, 5), (2, 5)), "6m", name,
              [from_exporter]),
        _case("bad: a burst shorter than a scrape interval, seen only by the exporter's count of bursts",
              burst_state("0x10") + [t.exporter("meshobs_authz_denied_bursts_total", NS, SVC, "0x5 1x5")], "6m", name,
              [from_exporter]),
        _case("bad: burst over a baseline", denied((0.02, 120), (2, 10)), "130m", name, [fires]),
        _case("bad: relative burst below the absolute rate", denied((0.02, 120), (0.8, 10)), "126m", name, [relative]),
        _case("bad: native proxy metrics only", native_denials(mesh, NS, SVC, (0, 120), (2, 10)), "130m", name, [fires]),
        _case("healthy: the exporter runs and reports no denial; the proxy's own 403s/denials are not counted",
              exporter_sees_none + native_denials(mesh, NS, SVC, (0, 120), (2, 10)), "130m", name, []),
        _case("healthy: the exporter reads the workload (no denial series yet); application 403s are not denials",
              exporter_sees_none[1:] + native_denials(mesh, NS, SVC, (0, 120), (2, 10)), "130m", name, []),
        _case("healthy: burst over", burst_state("1x5 0x5") + denied((0.02, 10)), "10m", name, []),
        *(_istio_rbac_cases(t, name, fires) if mesh == "istio" else []),
        *(_ambient_burst_cases(title, name) if mesh == "istio" else []),
        _case("healthy: steady trickle of denials", denied((0.02, 130)), "130m", name, []),
        _case("low traffic: from zero to a trickle", denied((0, 120), (0.02, 10)), "130m", name, []),
    ]


def _istio_rbac_cases(t: MeshTraffic, name: str, fires: dict) -> list[dict]:
    """Without the exporter, Istio's own RBAC filter stats (on the pod, named by the scrape job) judge denials."""
    pod = {"namespace": NS, "pod": f"{SVC}-7d4b9c-x2x7q", "http_conn_manager_prefix": "inbound_0.0.0.0_8080"}
    rbac = lambda *phases: [series("envoy_http_rbac", dict(pod, authz_enforce_result="denied"), counter(*phases)),
                            series("envoy_http_rbac", dict(pod, authz_enforce_result="allowed"), counter((5, 130)))]
    return [
        _case("bad: Istio RBAC stats only", rbac((0, 120), (2, 10)), "130m", name, [fires]),
        _case("healthy: the application answers 403, the RBAC filter denied nothing",
              rbac((0, 130)) + t.requests(NS, SVC, "403", (0, 120), (2, 10)), "130m", name, []),
    ]


DENIED_AT_L4 = L4(INTRUDER, POSTGRES, POSTGRES, 0, flags="DENY")
POSTGRES_WORKLOAD = {"destination_namespace": POSTGRES.namespace, "destination_workload": POSTGRES.name}


def _l4_denials(values: str, reporters: tuple[str, ...] = ("destination",)) -> list[dict]:
    """ztunnel's record of connections an AuthorizationPolicy refused: counted opened, then closed with DENY."""
    return [amb.ztunnel(metric, DENIED_AT_L4, reporter, values) for reporter in reporters
            for metric in ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                           "istio_tcp_connections_failed_total")]


def _ambient_burst_cases(title: str, name: str) -> list[dict]:
    """Istio ambient: L4 denials exist only in ztunnel's DENY flag; L7 denials in the waypoint's RBAC stats."""
    def burst(workload: dict, rate: str) -> dict:
        where = f"{workload['destination_workload']} in {workload['destination_namespace']}"
        return _alert("istio", name, "critical", dict(workload, basis="rates"),
                      f"{title}: burst of authorization denials at {workload['destination_workload']}",
                      f"{where} denies {rate} requests/s by authorization policy over the last 5m, "
                      "more than 5x its 1h baseline or above 1/s.")

    at_waypoint = {"destination_namespace": ACCOUNTS.namespace, "destination_workload": WAYPOINT}
    return [
        _case("bad (ambient): a burst of L4 denials (DENY) at the server's ztunnel", _l4_denials(counter((0, 120), (2, 10))),
              "130m", name, [burst(POSTGRES_WORKLOAD, "2")]),
        # read on the server's side only: both ztunnels' 0.6/s would add up to 1.2/s, above 1/s
        _case("healthy (ambient): a steady 0.6 L4 denials/s, reported by both ztunnels, counts once",
              _l4_denials(counter((0.6, 130)), ("source", "destination")), "130m", name, []),
        _case("bad (ambient): a burst of L7 denials in the waypoint's RBAC filter, counted at the waypoint",
              [amb.waypoint_rbac("denied", counter((0, 120), (2, 10))), amb.waypoint_rbac("allowed", counter((5, 130)))]
              + [amb.waypoint(INTRUDER, ACCOUNTS, "403", counter((0, 120), (2, 10)))], "130m", name,
              [burst(at_waypoint, "2")]),
        _case("low traffic (ambient): a few L4 denials", _l4_denials(counter((0, 120), (0.02, 10))), "130m", name, []),
    ]


def unauthorized_sustained(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshUnauthorizedAccessSustained"
    denied = lambda *phases: [t.exporter("meshobs_authz_denied_total", NS, SVC, counter(*phases))]
    fires = _alert(mesh, name, "warning", WORKLOAD, f"{title}: {SVC} keeps denying requests",
                   f"{SVC} in {NS} has denied 0.5 requests/s by authorization policy for at least 5m "
                   "(threshold 0.1/s over 5m); it fires for as long as this lasts.")
    return [
        # three hours in, the burst alert has long stopped (its baseline caught up); this one has not
        _case("bad: a steady 0.5 denials/s attack, three hours on", denied((0, 10), (0.5, 170)), "180m", name, [fires]),
        _case("bad: native proxy metrics only", native_denials(mesh, NS, SVC, (0.5, 60)), "60m", name, [fires]),
        _case("healthy: steady trickle of denials", denied((0.02, 60)), "60m", name, []),
        _case("low traffic: a few denials", denied((0, 50), (0.05, 10)), "60m", name, []),
        *(_ambient_sustained_cases(title, name) if mesh == "istio" else []),
    ]


def _ambient_sustained_cases(title: str, name: str) -> list[dict]:
    fires = _alert("istio", name, "warning", POSTGRES_WORKLOAD, f"{title}: {POSTGRES.name} keeps denying requests",
                   f"{POSTGRES.name} in {POSTGRES.namespace} has denied 0.5 requests/s by authorization policy for at "
                   "least 5m (threshold 0.1/s over 5m); it fires for as long as this lasts.")
    return [
        _case("bad (ambient): a steady 0.5 L4 denials/s at the server's ztunnel", _l4_denials(counter((0.5, 60))), "60m",
              name, [fires]),
        _case("low traffic (ambient): a trickle of L4 denials", _l4_denials(counter((0.02, 60))), "60m", name, []),
    ]


def mtls_failure(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshMTLSFailure"
    failures = lambda values: [t.exporter("meshobs_tls_handshake_failures_total", NS, SVC, values, reason="untrusted_cert")]
    fires = _alert(mesh, name, "critical", dict(WORKLOAD, reason="untrusted_cert"),
                   f"{title}: mTLS handshakes fail at {SVC} (untrusted_cert)",
                   f"{SVC} in {NS} rejects 0.5 TLS handshakes/s with reason untrusted_cert over the last 5m.")
    cases = [
        _case("bad", failures(counter((0.5, 10))), "10m", name, [fires]),
        _case("healthy", failures(constant(0, 10)), "10m", name, []),
        _case("low traffic: one stray failure", failures("0x5 1x5"), "10m", name, []),
    ]
    if mesh == "consul":
        native = [series("envoy_listener_ssl_fail_verify_no_cert", consul_tags(SVC, NS), counter((0.5, 10)))]
        expected = _alert(mesh, name, "critical", dict(WORKLOAD, reason="no_client_cert"),
                          f"{title}: mTLS handshakes fail at {SVC} (no_client_cert)",
                          f"{SVC} in {NS} rejects 0.5 TLS handshakes/s with reason no_client_cert over the last 5m.")
        cases.append(_case("bad: native Envoy counters only", native, "10m", name, [expected]))
        # an ingress gateway's Envoy in the same Prometheus: no Consul bootstrap tags, not the mesh
        gateway = [series("envoy_listener_ssl_connection_error", {"namespace": "ingress", "envoy_listener_address": "0.0.0.0_443"},
                          counter((5, 10)))]
        cases.append(_case("healthy: a gateway hit by TLS scanners is not the mesh", gateway, "10m", name, []))
    return cases


def plaintext(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshPlaintextTraffic"
    units = "requests or connections" if DIALECTS[mesh].ztunnels else "requests"  # ztunnel counts connections
    fires = _alert(mesh, name, "warning", WORKLOAD, f"{title}: plaintext traffic reaches {SVC}",
                   f"{SVC} in {NS} serves 1 {units}/s without mutual TLS over the last 5m.")
    cases = []
    if mesh == "consul":  # Consul labels no request as plaintext: only the exporter sees it
        bad = t.requests(NS, SVC, "200", (1, 15)) + [t.exporter("meshobs_plaintext_requests_total", NS, SVC, counter((1, 15)))]
        healthy = t.requests(NS, SVC, "200", (1, 15)) + [t.exporter("meshobs_plaintext_requests_total", NS, SVC, constant(0, 15))]
        low = t.requests(NS, SVC, "200", (1, 15)) + [t.exporter("meshobs_plaintext_requests_total", NS, SVC, "0x10 1x5")]
        # the public listener refuses plaintext: a TLS failure (not_tls), never plaintext traffic
        refused = healthy + [series("envoy_listener_ssl_connection_error", consul_tags(SVC, NS), counter((1, 15))),
                             t.exporter("meshobs_tls_handshake_failures_total", NS, SVC, counter((1, 15)), reason="not_tls")]
        cases.append(_case("healthy: refused plaintext is not plaintext traffic", refused, "15m", name, []))
    else:
        bad = t.requests(NS, SVC, "200", (1, 15), mtls=False)
        healthy = t.requests(NS, SVC, "200", (1, 15), mtls=True)
        low = t.requests(NS, SVC, "200", (1, 15)) + [
            {**s, "values": "0x10 1x5"} for s in t.requests(NS, SVC, "200", (0, 1), mtls=False)]
    if mesh == "linkerd":  # kubelet probes: plaintext to the pod IP, the policy's default probe route
        probes = [series("response_total", {
            "direction": "inbound", "namespace": NS, "deployment": SVC, "authority": "10.42.0.17:8080", "tls": "no_identity",
            "no_tls_reason": "no_tls_from_remote", "status_code": "200", "classification": "success",
            "srv_kind": "default", "srv_name": "all-unauthenticated", "route_kind": "default", "route_name": "probe"}, counter((1, 15)))]
        cases.append(_case("healthy: kubelet probes", healthy + probes, "15m", name, []))
    if mesh == "istio":
        cases += _ambient_plaintext_cases(title, name)
    return cases + [
        _case("bad", bad, "15m", name, [fires]),
        _case("healthy", healthy, "15m", name, []),
        _case("low traffic: one plaintext request", low, "15m", name, []),
    ]


def _ambient_plaintext_cases(title: str, name: str) -> list[dict]:
    """Istio ambient: ztunnel never writes `none`; plaintext reaching a captured pod is `unknown` at its ztunnel."""
    fires = _alert("istio", name, "warning", POSTGRES_WORKLOAD, f"{title}: plaintext traffic reaches {POSTGRES.name}",
                   f"{POSTGRES.name} in {POSTGRES.namespace} serves 1 requests or connections/s without mutual TLS "
                   "over the last 5m.")
    plain, hbone = L4(LEGACY, POSTGRES, POSTGRES, 0, mtls=False), L4(ACCOUNTS, POSTGRES, POSTGRES, 0)
    opened = lambda edge, reporter, values: [amb.ztunnel("istio_tcp_connections_opened_total", edge, reporter, values)]
    healthy = opened(hbone, "destination", counter((5, 15))) + opened(hbone, "source", counter((5, 15)))
    # the client's ztunnel sends plain TCP to a pod it does not capture: `unknown` on the source side only
    to_outside = opened(L4(WEB, LEGACY, LEGACY, 0, mtls=False), "source", counter((1, 15)))
    # a sidecar pod outside istio-system serving series that look like ztunnel's: not a ztunnel
    forged = [series("istio_tcp_connections_opened_total", {**_ztunnel_labels(plain, "destination"), "namespace": "bank",
                                                              "pod": "ztunnel-fake"}, counter((1, 15)))]
    return [
        _case("bad (ambient): plaintext from outside the mesh reaches postgres (`unknown` at its ztunnel)",
              healthy + opened(plain, "destination", counter((1, 15))), "15m", name, [fires]),
        _case("healthy (ambient): HBONE only, and plaintext a client's ztunnel sends out of the mesh",
              healthy + to_outside, "15m", name, []),
        _case("healthy (ambient): a pod outside istio-system forging ztunnel's series is not read", healthy + forged,
              "15m", name, []),
        _case("low traffic (ambient): one plaintext connection", healthy + opened(plain, "destination", "0x10 1x5"),
              "15m", name, []),
        _case("bad (mixed layout): plaintext to a sidecar workload (`none`) and to an ambient one (`unknown`)",
              healthy + opened(plain, "destination", counter((1, 15)))
              + MeshTraffic("istio").requests(NS, SVC, "200", (1, 15), mtls=False), "15m", name,
              [fires, _alert("istio", name, "warning", WORKLOAD, f"{title}: plaintext traffic reaches {SVC}",
                             f"{SVC} in {NS} serves 1 requests or connections/s without mutual TLS over the last 5m.")]),
    ]


LEAF_LIFETIME = {"istio": 24 * 3600, "linkerd": 24 * 3600, "consul": 72 * 3600}


def cert_expiry(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshCertificateExpiringSoon"
    at = 600  # evaluated at 10m: time() is 600
    cert = lambda kind, left, **extra: [t.exporter("meshobs_cert_expiry_timestamp_seconds", NS, SVC, constant(at + left, 10),
                                                   cert=kind)]
    lifetime = LEAF_LIFETIME[mesh]

    def leaf(severity: str, fraction: str, percent: str) -> dict:
        return _alert(mesh, name, severity, dict(WORKLOAD, cert="leaf", basis="lifetime"),
                      f"{title}: leaf certificate of {SVC} is not being renewed",
                      f"The leaf certificate of {SVC} in {NS} has {percent} of its lifetime left (threshold {fraction}): "
                      "the mesh renews it long before, so its rotation has failed.")

    def ca(severity: str, within: str, left: str) -> dict:
        return _alert(mesh, name, severity, dict(WORKLOAD, cert="ca", basis="expiry"),
                      f"{title}: ca certificate of {SVC} expires within {within}",
                      f"The ca certificate of {SVC} in {NS} expires in {left}.")

    hour_left = f"{100 * 3600 / lifetime:.4g}%"
    cases = [
        _case("healthy: a leaf at its normal age (three quarters of its lifetime left)", cert("leaf", lifetime * 3 // 4), "10m", name, []),
        _case("healthy: a leaf half-way, about to be renewed", cert("leaf", lifetime // 2), "10m", name, []),
        _case("bad: a leaf with one hour left (rotation failed)", cert("leaf", 3600), "10m", name,
              [leaf("critical", "5%", hour_left), leaf("warning", "10%", hour_left)]),
        # a 2 h certificate 5 minutes from expiry at 130m: its own lifetime judges it (4%: only the
        # warning has held for 5 minutes), not the mesh default (which would call it 0.3%)
        _case("bad: a short-lived leaf whose start is known", [
            t.exporter("meshobs_cert_expiry_timestamp_seconds", NS, SVC, constant(7800 + 300, 130), cert="leaf"),
            t.exporter("meshobs_cert_not_before_timestamp_seconds", NS, SVC, constant(7800 + 300 - 7200, 130), cert="leaf")],
              "130m", name, [leaf("warning", "10%", "4.167%")]),
        _case("bad: CA with 3 days left", cert("ca", 3 * 86400), "10m", name, [ca("warning", "7d", "3d 0h 0m 0s")]),
        _case("bad: CA with 12 hours left", cert("ca", 12 * 3600), "10m", name,
              [ca("critical", "1d", "12h 0m 0s"), ca("warning", "7d", "12h 0m 0s")]),
        _case("healthy: CA with 30 days left", cert("ca", 30 * 86400), "10m", name, []),
    ]
    if mesh == "linkerd":
        native = lambda left: [series("identity_cert_expiration_timestamp_seconds", {"namespace": NS, "statefulset": SVC},
                                      constant(at + left, 10))]
        cases.append(_case("bad: native proxy metric only, a StatefulSet's leaf with one hour left", native(3600), "10m", name,
                           [leaf("critical", "5%", hour_left), leaf("warning", "10%", hour_left)]))
        cases.append(_case("healthy: native proxy metric only, a leaf 18 hours from expiry", native(18 * 3600), "10m", name, []))
    if mesh == "istio":
        root = [series("citadel_server_root_cert_expiry_timestamp", {"namespace": "istio-system", "pod": "istiod-1"},
                       constant(at + 3 * 86400, 10))]
        expected = _alert(mesh, name, "warning", {"cert": "root", "basis": "expiry"},
                          f"{title}: root certificate expires within 7d", "The root certificate expires in 3d 0h 0m 0s.")
        cases.append(_case("bad: istiod's root CA with 3 days left", root, "10m", name, [expected]))
    return cases


def error_budget(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshErrorBudgetBurn"
    labels, where = _service(t)

    def every_burn_rate(percent: str) -> list[dict]:
        fired = [_alert(mesh, name, burn.severity, dict(labels, long_window=burn.long_window, short_window=burn.short_window),
                        f"{title}: {SVC} burns its error budget {burn.factor:g}x too fast",
                        f"{where} has an error ratio of {percent} over {burn.long_window} and {burn.short_window}: "
                        f"{burn.factor:g}x the rate that spends the 99.9% SLO's budget in 30d.") for burn in CFG.slo.burn_rates]
        return sorted(fired, key=lambda a: a["exp_labels"]["severity"])

    return [
        _case("bad: 10% errors for 70 minutes", t.requests(NS, SVC, "200", (9, 80)) + t.requests(NS, SVC, "503", (1, 80)),
              "70m", name, every_burn_rate("10%")),
        _case("bad: low traffic, 0.1 req/s failing half", t.requests(NS, SVC, "200", (0.05, 40)) + t.requests(NS, SVC, "503", (0.05, 40)),
              "40m", name, every_burn_rate("50%")),
        _case("healthy: 0.01% errors", t.requests(NS, SVC, "200", (10, 80)) + t.requests(NS, SVC, "503", (0.001, 80)), "70m", name, []),
        _case("low traffic: a single failed request", t.requests(NS, SVC, "200", (0.1, 40)) + [
            {**s, "values": "0x35 1x5"} for s in t.requests(NS, SVC, "503", (0, 1))], "40m", name, []),
    ]


def config_rejected(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshProxyConfigRejected"
    where = {"consul": " by checkout in shop"}.get(mesh, "")
    labels = WORKLOAD if mesh == "consul" else {}

    def fires(count: str) -> dict:
        return _alert(mesh, name, "warning", labels, f"{title}: configuration rejected",
                      f"{count} configuration updates were rejected in the last 10m{where}.")

    # the counter is born with the first rejection (value 1): increase() alone never sees it
    first = [{**s, "values": "_x5 1x10"} for s in t.config_rejections((0, 15))]
    return [
        _case("bad", t.config_rejections((0.1, 15)), "15m", name, [fires("60")]),
        _case("bad: the first rejection", first, "12m", name, [fires("2" if mesh == "consul" else "1")]),
        _case("healthy", t.config_rejections((0, 15)), "15m", name, []),
    ]


def exporter_target_down(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshExporterTargetDown"
    up = lambda values: [t.exporter("meshobs_target_up", NS, SVC, values, instance="10.0.0.7:15090")]
    fires = _alert(mesh, name, "warning", dict(WORKLOAD, namespace=NS, workload=SVC),
                   f"{title}: the meshobs exporter cannot read proxy {SVC}",
                   f"The meshobs exporter has failed to scrape the proxy of {SVC} in {NS} for 5 minutes; its security signals are missing.")
    return [
        _case("bad", up(constant(0, 10)), "10m", name, [fires]),
        _case("healthy", up(constant(1, 10)), "10m", name, []),
        _case("blip: down for two minutes", up("1x5 0x2 1x3"), "10m", name, []),
    ]


def dry_run_denials(mesh: str, title: str) -> list[dict]:
    t = MeshTraffic(mesh)
    name = "MeshPolicyDryRunDenials"
    healthy = [t.exporter("meshobs_authz_dry_run_denied_total", NS, SVC, constant(0, 15))]
    if not signals.DRY_RUN_DENIED.available(DIALECTS[mesh]):  # a proxy that reports no dry-run decision
        return [_case("never rendered", healthy, "15m", name, [])]
    fires = _alert(mesh, name, "info", WORKLOAD,
                   f"{title}: a dry-run authorization policy would deny requests to {SVC}",
                   f"A dry-run (shadow) policy at {SVC} in {NS} would deny 1 requests/s (last 5m): "
                   "enforcing it now would break these callers (`meshobs authz` lists them).")
    return [
        _case("bad", [t.exporter("meshobs_authz_dry_run_denied_total", NS, SVC, counter((1, 15)))], "15m", name, [fires]),
        _case("healthy", healthy, "15m", name, []),
    ]


def exporter_down(mesh: str, title: str) -> list[dict]:
    name = "MeshExporterDown"
    up = lambda values: [series("up", {"job": "meshobs-exporter", "instance": "10.0.0.9:9942"}, values)]
    description = ("Prometheus has not scraped the meshobs exporter (job meshobs-exporter){} for 5 minutes: TLS failures, "
                   "denial bursts, plaintext and certificate expiry of the proxies it reads are unknown.")
    down = {"exp_labels": {"severity": "critical", "mesh": mesh, "job": "meshobs-exporter", "instance": "10.0.0.9:9942",
                           "cluster": CLUSTER},
            "exp_annotations": {"summary": f"{title}: the meshobs exporter is down",
                                "description": description.format(" at 10.0.0.9:9942"), "runbook_url": f"{RUNBOOK}meshexporterdown"}}
    absent = {"exp_labels": {"severity": "critical", "mesh": mesh, "job": "meshobs-exporter"},
              "exp_annotations": {"summary": f"{title}: the meshobs exporter is down",
                                  "description": description.format(""), "runbook_url": f"{RUNBOOK}meshexporterdown"}}
    other = [series("up", {"job": "istio-proxies", "instance": "10.0.0.7:15090"}, constant(1, 10))]
    # One store, two clusters: both clusters' proxies report, only c1's exporter is scraped
    proxies = MeshTraffic(mesh).requests(NS, SVC, "200", (1, 10))
    c2 = in_cluster("c2", proxies)
    in_c2 = {"exp_labels": {"severity": "critical", "mesh": mesh, "job": "meshobs-exporter", "cluster": "c2"},
             "exp_annotations": absent["exp_annotations"]}
    return [
        _case("bad: its scrape fails", up(constant(0, 10)), "10m", name, [down]),
        _case("bad: no scrape job for it at all", other, "10m", name, [absent]),
        _case("bad: one of two clusters has proxies but no exporter", up(constant(1, 10)) + proxies + c2, "10m", name,
              [in_c2]),
        _case("healthy: the exporter of the only cluster with proxies is up", up(constant(1, 10)) + proxies, "10m", name, []),
        _case("healthy", up(constant(1, 10)), "10m", name, []),
        _case("blip: one failed scrape", up("1x5 0x1 1x4"), "10m", name, []),
    ]


SCENARIOS = {
    "MeshHighErrorRate": high_error_rate,
    "MeshHighLatencyP99": high_latency,
    "MeshUnauthorizedAccessBurst": unauthorized_burst,
    "MeshUnauthorizedAccessSustained": unauthorized_sustained,
    "MeshMTLSFailure": mtls_failure,
    "MeshPlaintextTraffic": plaintext,
    "MeshCertificateExpiringSoon": cert_expiry,
    "MeshErrorBudgetBurn": error_budget,
    "MeshProxyConfigRejected": config_rejected,
    "MeshExporterTargetDown": exporter_target_down,
    "MeshExporterDown": exporter_down,
    "MeshPolicyDryRunDenials": dry_run_denials,
}


def test_every_alert_has_scenarios():
    """Every alert meshobs renders is covered by a promtool scenario."""
    assert set(SCENARIOS) == set(ALERT_NAMES)


@pytest.mark.parametrize("mesh", sorted(DIALECTS))
@pytest.mark.parametrize("alertname", ALERT_NAMES)
def test_alert_fires_on_bad_and_stays_silent_otherwise(alertname, mesh, rule_files, tmp_path):
    """promtool agrees with each scenario: bad fires with exact labels and annotations, the rest stay silent."""
    run_promtool(rule_files[mesh], tmp_path, f"{mesh}-{alertname}", SCENARIOS[alertname](mesh, DIALECTS[mesh].title))


def run_promtool(files, tmp_path: Path, name: str, tests: list[dict]) -> None:
    """`promtool test rules` of `tests` on the rule `files`; fails with promtool's output."""
    test_file = tmp_path / f"{name}.yaml"
    test_file.write_text(yamlfmt.dump({
        "rule_files": [str(p) for p in sorted(files)],
        "evaluation_interval": "1m",
        "tests": tests,
    }))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
