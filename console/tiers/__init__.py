"""Metrics tiers: rollups of raw samples into 1-minute and 1-hour buckets, and retention."""
