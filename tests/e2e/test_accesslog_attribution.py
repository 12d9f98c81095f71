"""Policy attribution from a real Envoy: a request denied by a named DENY policy logs the policy
in response_code_details; the record and the rendered Fluentd security records carry the matched
policy and the denied source's principal (Fluentd's Ruby translated to Python: no Fluentd runs here)."""

from __future__ import annotations

import re

from meshobs import accesslog
from tests.e2e.test_accesslog_envoy import drive_traffic
from tests.e2e.test_accesslog_fluentd import CRI_TIME, fluentd_conf, fluentd_parse, fluentd_tag
from tests.support.envoy import spiffe

POLICY = "ns[other]-policy[deny-intruder]-rule[0]"  # Istio names RBAC policies this way
INTRUDER = spiffe("other", "intruder")


def deny_intruder(config: dict) -> None:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0]["typed_config"]["rules"] = {"action": "DENY", "policies": {POLICY: {
        "permissions": [{"any": True}],
        "principals": [{"authenticated": {"principal_name": {"exact": INTRUDER}}}],
    }}}


def fluentd_attribution(conf, record: dict) -> dict:
    """The rendered record_transformer on denied records, evaluated as Ruby would."""
    section = next(d for d in conf if d.name == "filter" and d.arg == "meshobs.security.access_denied").child("record")
    policy = section.params["matched_policy"]
    found = None
    for name, pattern in re.findall(r'record\["(\w+)"\]\.to_s\[/(.+?)/, 1\]', policy):
        match = re.search(pattern, str(record.get(name) or ""))
        found = found or (match.group(1) if match else None)
    assert section.params["source_principal"] == (
        '${record["transport_failure_reason"].to_s.empty? ? record["peer_principal"] : nil}')
    principal = record.get("peer_principal") if not record.get("transport_failure_reason") else None
    return {"matched_policy": found, "source_principal": principal}


def test_a_denial_names_its_policy_and_source_in_the_record_and_in_fluentd(processes, tmp_path):
    """The 403 of a named DENY policy parses to matched_policy and source_principal, and Fluentd's security record carries both."""
    _, captured = drive_traffic(processes, tmp_path, customize=deny_intruder)
    allowed, denied = sorted(accesslog.parse_lines(captured[("http_connection_manager", "json")]),
                             key=lambda r: r.response_code)
    assert denied.response_code_details == f"rbac_access_denied_matched_policy[{POLICY}]"
    assert (denied.matched_policy, denied.source_principal) == (POLICY, INTRUDER)
    assert (allowed.matched_policy, allowed.source_principal) == (None, spiffe("default", "frontend"))

    for encoding in ("json", "text"):
        conf = fluentd_conf(encoding)
        # by its parsed status: "403" can also be part of another field (a port, a duration, an id)
        line = next(l for l in captured[("http_connection_manager", encoding)]
                    if l.strip() and accesslog.parse_line(l).response_code == 403)
        record = fluentd_parse(conf, f"{CRI_TIME} stdout F {line}")
        assert fluentd_tag(conf, record) == "meshobs.security.access_denied"
        assert fluentd_attribution(conf, record) == {"matched_policy": POLICY, "source_principal": INTRUDER}
