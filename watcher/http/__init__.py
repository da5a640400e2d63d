"""The daemon's HTTP surface: probes, Prometheus metrics, the events API, SSE, the status page."""
