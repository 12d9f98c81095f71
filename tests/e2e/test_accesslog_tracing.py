"""Consul's rendered tracing escape hatches in a real Envoy: spans leave over OTLP/gRPC and the
access log's trace context matches them."""

from __future__ import annotations

import json
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from meshobs import accesslog, config
from meshobs.meshes import DIALECTS
from meshobs.render import collectors
from tests.support.envoy import start_envoy
from tests.support.procs import free_port, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint keeping (service name, trace id hex, span attributes) per span."""

    def __init__(self):
        self.spans: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        attrs = {a.key: a.value.string_value for a in span.attributes}
                        self.spans.append((resource.get("service.name"), span.trace_id.hex(), attrs))
        return trace_service_pb2.ExportTraceServiceResponse()


def test_envoy_sends_otlp_spans_whose_trace_ids_are_in_the_access_log(processes, tmp_path):
    """With 100% sampling, each request's span reaches the OTLP receiver and its trace id is the logged one."""
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        cfg = config.from_dict({"tracing": {"sampling_percent": 100.0}})
        rendered = collectors.render(cfg, DIALECTS["consul"])
        hatches = json.loads(rendered["collectors/consul/proxy-defaults.json"])["Config"]
        log = accesslog.envoy_file_access_log(str(tmp_path / "http.log"), "json")

        def with_tracing(bootstrap: dict) -> None:
            tracing = json.loads(hatches["envoy_listener_tracing_json"])
            tracing.pop("@type")
            hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            hcm["tracing"] = tracing
            cluster = json.loads(hatches["envoy_extra_static_clusters_json"])
            # The rendered cluster points at the Collector's Service; here, at the test's receiver.
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] = {
                "address": "127.0.0.1", "port_value": port}
            bootstrap["static_resources"]["clusters"] = [cluster]
            # Flush spans every 100 ms instead of every 5 s.
            bootstrap["layered_runtime"]["layers"][0]["static_layer"]["tracing.opentelemetry.flush_interval_ms"] = 100

        envoy = start_envoy(processes, tmp_path, customize=with_tracing, http_access_log=[log])
        traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
        assert envoy.request(envoy.pki.allowed, "/traced", headers={"traceparent": traceparent}) == 200
        assert envoy.request(envoy.pki.denied, "/denied") == 403
        wait_until(lambda: len((tmp_path / "http.log").read_text().splitlines()) == 2, timeout=15, what="2 access-log lines")
        records = accesslog.parse_lines((tmp_path / "http.log").read_text().splitlines())
        wait_until(lambda: len(receiver.spans) >= 2, timeout=15, what="2 spans over OTLP")
    finally:
        server.stop(None)

    allowed, denied = sorted(records, key=lambda r: r.connection_id)
    assert allowed.traceparent == traceparent
    assert allowed.trace_id == TRACE_ID
    assert denied.traceparent is None and denied.trace_id is not None and denied.trace_id != TRACE_ID
    spans = {trace_id: (service, attrs) for service, trace_id, attrs in receiver.spans}
    assert set(spans) == {allowed.trace_id, denied.trace_id}
    assert {service for service, _ in spans.values()} == {"consul-sidecar"}
    assert spans[denied.trace_id][1]["http.status_code"] == "403"
