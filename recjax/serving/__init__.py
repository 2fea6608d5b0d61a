"""Serving: bundles in, recommendations out (HTTP API, request logs, drift reports)."""
