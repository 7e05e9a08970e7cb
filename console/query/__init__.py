"""Queries over stored metrics: hosts with their summary, metric names, range queries."""
