"""One trace per scrape cycle, one span per target, exported over OTLP when the standard
OpenTelemetry variables ask for it. Unset, nothing is imported and spans cost nothing."""

from __future__ import annotations

import contextlib
import os


class _NoTracer:
    @contextlib.contextmanager
    def span(self, name: str, attributes: dict | None = None):
        yield None

    def shutdown(self) -> None:
        pass


class _OtlpTracer:
    def __init__(self):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES override the default name
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "meshobs-exporter")})
        self._provider = TracerProvider(resource=resource)
        # the batch processor drops spans when its queue is full: an OTLP outage never slows scraping
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("meshobs.exporter")

    def span(self, name: str, attributes: dict | None = None):
        return self._tracer.start_as_current_span(name, attributes=attributes)

    def shutdown(self) -> None:
        self._provider.shutdown()


def tracer():
    wanted = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not wanted or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return _NoTracer()
    return _OtlpTracer()
