"""The rendered Fluentd parser and routing, applied to real Envoy lines (Fluentd's own regexps and
time formats translated to Python: no Fluentd runs here)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from meshobs import accesslog, config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
from tests.collectors import fluent_conf
from tests.e2e.test_accesslog_envoy import ENCODINGS, drive_traffic

CRI_TIME = "2026-11-25T20:52:19.123456789Z"


def fluentd_conf(encoding: str) -> list[fluent_conf.Directive]:
    cfg = config.from_dict({"logging": {"access_log_encoding": encoding}})
    return fluent_conf.parse(collectors.render(cfg, DIALECTS["consul"])["collectors/consul/fluentd/fluent.conf"].decode())


def python_regexp(fluentd_expression: str) -> re.Pattern:
    assert fluentd_expression.startswith("/") and fluentd_expression.endswith("/")
    return re.compile(accesslog.ruby_to_python(fluentd_expression[1:-1]))


def python_time(value: str, ruby_format: str) -> dt.datetime:
    # %L is Ruby's milliseconds; Python's %f takes 1 to 6 digits. Envoy's START_TIME has 3.
    parsed = dt.datetime.strptime(value, ruby_format.replace("%L", "%f"))
    return parsed.replace(tzinfo=dt.timezone.utc)


def fluentd_parse(conf, cri_line: str) -> dict:
    """What the tail source and the parser filter make of one CRI log line."""
    tail = next(d for d in conf if d.name == "source" and d.params["@type"] == "tail").child("parse")
    log = python_regexp(tail.params["expression"]).match(cri_line).group(tail.params.get("key_name", "log"))
    parse = next(d for d in conf if d.name == "filter" and d.params["@type"] == "parser").child("parse")
    if parse.params["@type"] == "json":
        record = json.loads(log)
    else:
        match = python_regexp(parse.params["expression"]).match(log)
        assert match, f"Fluentd regexp does not match {log!r}"
        null = python_regexp(parse.params["null_value_pattern"])
        record = {k: None if null.match(v) else v for k, v in match.groupdict().items()}
        for item in parse.params["types"].split(","):
            name, kind = item.split(":")
            assert kind == "integer"
            record[name] = None if record[name] is None else int(record[name])
    record["@time"] = python_time(record[parse.params["time_key"]], parse.params["time_format"])
    return record


def fluentd_tag(conf, record: dict) -> str | None:
    """rewrite_tag_filter: the first rule whose key is present and matches; no rule, no record."""
    rewrite = next(d for d in conf if d.name == "match" and d.params["@type"] == "rewrite_tag_filter")
    for rule in rewrite.children:
        value = record.get(rule.params["key"])
        if value is not None and python_regexp(rule.params["pattern"]).search(str(value)):
            return rule.params["tag"]
    return None


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fluentd_parses_and_routes_real_envoy_lines(processes, tmp_path, encoding):
    """Every real line (in its CRI wrapper) matches the rendered parser, its fields equal meshobs's
    parse, and it is routed to the agreed tag."""
    conf = fluentd_conf(encoding)
    _, captured = drive_traffic(processes, tmp_path)
    routed = []
    for level in ("http_connection_manager", "listener"):
        for line in captured[(level, encoding)]:
            record = fluentd_parse(conf, f"{CRI_TIME} stdout F {line}")
            typed = accesslog.parse_line(line)
            assert record["@time"] == typed.start_time
            for f in accesslog.FIELDS:
                value = record.get(f.name)
                value = None if value == f.none_value else value
                expected = getattr(typed, f.name)
                assert value == (expected.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if f.kind == "time" else expected), f.name
            routed.append((level, typed.response_code, fluentd_tag(conf, record), accesslog.security_kind(typed)))
    assert sorted(routed, key=str) == sorted([
        ("http_connection_manager", 200, "meshobs.access.consul", None),
        ("http_connection_manager", 403, "meshobs.security.access_denied", "access_denied"),
        ("listener", None, "meshobs.access.consul", None),
        ("listener", None, "meshobs.access.consul", None),
        ("listener", None, "meshobs.security.tls_failure", "tls_failure"),
        ("listener", None, "meshobs.security.tls_failure", "tls_failure"),
        ("listener", None, "meshobs.security.tls_failure", "tls_failure"),
    ], key=str)


def test_proxy_own_log_lines_are_not_records():
    """A line of the proxy's own log does not match the text parser and gets no tag."""
    conf = fluentd_conf("text")
    parse = next(d for d in conf if d.name == "filter" and d.params["@type"] == "parser").child("parse")
    own = "[2026-11-25 20:52:19.123][1][warning][config] gRPC config stream closed: 14, no healthy upstream"
    assert python_regexp(parse.params["expression"]).match(own) is None
    assert fluentd_tag(conf, {"log": own}) is None
