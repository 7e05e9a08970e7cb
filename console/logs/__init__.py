"""Logs: storage, full-text search, retention and live tail of log records."""
