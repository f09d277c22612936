"""Observability below both faces: Prometheus metrics over the engine, structured logs."""
