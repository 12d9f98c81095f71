"""With OTEL_EXPORTER_OTLP_ENDPOINT set, each scrape cycle is a trace with one span per target."""

from __future__ import annotations

import gzip
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.exporter import faults
from tests.exporter.running import start_exporter
from tests.support.procs import free_port, wait_until


class OtlpHttpReceiver:
    """Receives OTLP/HTTP protobuf trace exports and keeps the spans."""

    def __init__(self):
        self.spans = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        owner.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver():
    otlp = OtlpHttpReceiver()
    yield otlp
    otlp.stop()


def test_a_cycle_is_a_trace_with_a_span_per_target(receiver, processes, tmp_path):
    """Spans `scrape` for a good and a refusing target share the trace of their `scrape_cycle` parent; the failure is marked."""
    servers = faults.FaultServers()
    try:
        good = servers.add(faults.good())
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_BSP_SCHEDULE_DELAY": "100"}
        start_exporter(processes, tmp_path, "--target", f"consul/shop/good=http://127.0.0.1:{good}",
                       "--target", f"consul/shop/gone=http://127.0.0.1:{free_port()}", "--scrape-interval", "200ms", env=env)

        def one_cycle():
            cycles = [s for s in receiver.spans if s.name == "scrape_cycle"]
            for cycle in cycles:
                children = [s for s in receiver.spans if s.parent_span_id == cycle.span_id]
                if len(children) == 2:
                    return cycle, children
            return None

        cycle, children = wait_until(one_cycle, timeout=15, what="a cycle with its two spans")
    finally:
        servers.stop()
    assert {c.name for c in children} == {"scrape"}
    assert {c.trace_id for c in children} == {cycle.trace_id}
    attributes = {next(a.value.string_value for a in c.attributes if a.key == "workload"):
                  {a.key: a.value.string_value for a in c.attributes} for c in children}
    assert attributes["gone"]["error.type"] == "refused"
    assert "error.type" not in attributes["good"]
