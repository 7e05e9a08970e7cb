"""Alerting: Prometheus rule files, their evaluation and alert state (docs/alerting.md)."""
