"""Renderers: signal objects in, artefacts (path -> bytes) out. They never build PromQL."""
