"""Security events to Fluentd (forward protocol, with the shared-key handshake when a key is
given), off the scrape path.

`submit` never blocks: events go through a bounded queue to one sender thread; a full queue or a
failed send drops the event and counts it (a dropped event is never resent late or twice).
"""

from __future__ import annotations

import logging
import queue
import threading

from prometheus_client import Counter, CollectorRegistry

from meshobs.exporter.forward import ForwardSender
from meshobs.exporter.state import Event

log = logging.getLogger(__name__)

TAG_PREFIX = "meshobs.security"


class FluentdEvents:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, queue_size: int = 1000, timeout: float = 1.0,
                 shared_key: bytes | None = None):
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=queue_size)
        self._sender = ForwardSender(host, port, timeout=timeout, shared_key=shared_key)
        self.sent = Counter("meshobs_events_sent", "Security events delivered to Fluentd.", ["kind"], registry=registry)
        self.dropped = Counter("meshobs_events_dropped", "Security events dropped (Fluentd down or slow).",
                               ["kind", "reason"], registry=registry)
        self._thread = threading.Thread(target=self._run, name="fluentd-events", daemon=True)
        self._thread.start()

    def submit(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped.labels(event.kind, "queue_full").inc()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            if self._sender.emit(f"{TAG_PREFIX}.{event.kind}", event.record):
                self.sent.labels(event.kind).inc()
            else:
                self.dropped.labels(event.kind, "send_failed").inc()
                log.debug("fluentd: %s dropped: %s", event.kind, self._sender.last_error)

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._sender.close()


class LogEvents:
    """Without --fluentd, events are logged so that they are not lost silently."""

    def submit(self, event: Event) -> None:
        log.info("security event %s.%s %s", TAG_PREFIX, event.kind, event.record)

    def close(self) -> None:
        pass
