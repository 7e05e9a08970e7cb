"""Blackbox probes run by the console (docs/probes.md)."""
