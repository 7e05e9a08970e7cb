"""The audit log: append-only, hash-chained records of who did what."""
