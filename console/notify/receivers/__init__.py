"""Receiver integrations: one module per type, each rendering the webhook version-4
payload (console/notify/outbox.py) into its vendor's message and sending it."""
