"""Notifications: from active alerts to messages that reach people (docs/alerting.md).

The pipeline follows Alertmanager's (its ``dispatch``, ``inhibit``, ``silence`` and
``notify`` packages), with the alert model of its API v2:

    rules (console/alerting) ─┐
                              ├─> AlertStore ─> Dispatcher ─> outbox table ─> DeliveryWorker ─> receivers
    POST /alertmanager/api/v2/alerts ┘        (route tree, grouping,      (retries, backoff,
                                               inhibition, muting)         notification log)

``model``: the alert as notified; ``store``: active alerts by fingerprint; ``muting``: the
muters (silences, maintenance windows, deploy holds, time intervals, inhibition) the
dispatcher and the alert history consult; ``outbox``: the table notifications go
through, which is also the notification log; ``delivery``: the worker that sends the
outbox with retries; ``receivers``: one module per integration type and their
configuration models; ``render``: the message templates (English, Simplified Chinese);
``handlers`` and ``cli``: the notification log and test messages.
"""
