"""Ingest: validate agent batches and store them in one transaction."""
