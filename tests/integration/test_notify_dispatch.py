"""The dispatcher on a real database (SQLite and PostgreSQL): alerts put into the alert
store, rounds run at times the test chooses, and the ``notifications`` rows it queues
read back: grouping, group_wait / group_interval / repeat_interval, resolved
notifications and send_resolved, continue, group_by ``...``, muting (a muter registered
on Muting, inhibition and its shipped HostDown rule), mute and active time intervals,
the webhook version-4 payload, and the notification log read from the rows so that a
restarted dispatcher does not notify again. Expected payloads are written out by hand
from Alertmanager's webhook documentation, not computed by the code under test."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import orjson
import pytest
import yaml
from sqlalchemy import select

from console.notify.config import parse_notifications
from console.notify.dispatch import Dispatcher
from console.notify.inhibit import Inhibitor
from console.notify.model import NotifyAlert, fingerprint
from console.notify.muting import Muting
from console.notify.store import AlertStore
from console.storage.database import Database
from console.storage.models import Notification
from tests.conftest import database_url

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc).timestamp()  # a Monday, 10:00 UTC
ZERO = "0001-01-01T00:00:00Z"
URL = "https://fleetdeck.example"

CONFIG = """
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="page"']
      receiver: pager
      continue: true
    - matchers: ['team="db"']
      receiver: db
      group_by: ['...']
    - matchers: ['team="night"']
      receiver: ops
      mute_time_intervals: [office-hours]
    - matchers: ['team="day"']
      receiver: ops
      active_time_intervals: [office-hours]
receivers:
  - name: ops
    webhook_configs:
      - url: http://127.0.0.1:9/ops
      - url: http://127.0.0.1:9/ops-quiet
        send_resolved: false
  - name: pager
    webhook_configs:
      - url: http://127.0.0.1:9/pager
        max_alerts: 1
  - name: db
    webhook_configs:
      - url: http://127.0.0.1:9/db
inhibit_rules:
  - source_matchers: ['alertname="ClusterDown"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
time_intervals:
  - name: office-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '09:00', end_time: '17:00'}]
        location: Asia/Shanghai
"""


class ListMuter:
    """A muter for the test: mutes label sets whose ``instance`` is in ``instances``."""

    def __init__(self) -> None:
        self.instances: set[str] = set()

    def muted_by(self, labels, now):
        return [f"test:{labels['instance']}"] if labels.get("instance") in self.instances else []


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_url(request, tmp_path_factory):
    with database_url(request.param, tmp_path_factory) as url:
        yield url


class Rig:
    def __init__(self, db: Database, config: str = CONFIG, store: AlertStore | None = None,
                 default_inhibit_rules: bool = True) -> None:
        self.db = db
        self.store = store or AlertStore()
        self.muting = Muting()
        self.muter = ListMuter()
        self.muting.register(self.muter)
        inhibitor = Inhibitor(self.store)
        self.muting.register(inhibitor)
        notifications = parse_notifications(yaml.safe_load(config), lambda loc: None, "n")
        self.dispatcher = Dispatcher(db, self.store, self.muting, notifications, inhibitor=inhibitor,
                                     default_inhibit_rules=default_inhibit_rules, external_url=URL,
                                     clock=lambda: self.now)
        self.muting.register(self.dispatcher)  # as Services registers it
        self.now = T0
        self.seen = 0

    def put(self, labels: dict, starts_at: float | None = None, ends_at: float | None = None, **annotations) -> None:
        self.store.put([NotifyAlert(labels, annotations, starts_at=self.now if starts_at is None else starts_at,
                                    ends_at=ends_at, generator_url=f"{URL}/alerts")], self.now)

    def tick(self, at: float) -> list[dict]:
        """One round at ``at``; the rows it queued (receiver, integration, payload)."""
        self.now = at
        asyncio.run(self.dispatcher.tick(at))
        rows = self.db.run(lambda s: [(r.id, r.receiver, r.integration, r.group_key, r.payload, r.created_at,
                                       r.dedup_key)
                                      for r in s.scalars(select(Notification).order_by(Notification.id))])
        fresh = [r for r in rows if r[0] > self.seen]
        self.seen = max([self.seen] + [r[0] for r in rows])
        return [{"receiver": r[1], "integration": r[2], "group_key": r[3], "payload": orjson.loads(r[4]),
                 "created_at": r[5], "dedup_key": r[6]} for r in fresh]

    def close(self) -> None:
        self.dispatcher.close()


@pytest.fixture()
def rig(db_url):
    db = Database(db_url)
    db.migrate()
    db.run(lambda s: s.query(Notification).delete())
    rig = Rig(db)
    yield rig
    rig.close()
    db.close()


def summary(rows: list[dict]) -> list[tuple]:
    return sorted((r["receiver"], r["integration"], r["payload"]["status"],
                   tuple(sorted(a["labels"].get("instance", "") + ":" + a["status"] for a in r["payload"]["alerts"])))
                  for r in rows)


def test_group_wait_then_one_notification_per_group_with_the_version_4_payload(rig):
    rig.put({"alertname": "DiskFull", "instance": "b", "job": "node"}, summary="b full")
    rig.put({"alertname": "DiskFull", "instance": "a", "job": "node"}, summary="a full")
    rig.put({"alertname": "Load", "instance": "a", "job": "node"}, summary="a busy")
    assert rig.tick(T0) == []
    assert rig.tick(T0 + 29) == []  # group_wait is 30 s
    rows = rig.tick(T0 + 30)
    assert summary(rows) == [
        ("ops", "webhook[0]", "firing", ("a:firing",)),
        ("ops", "webhook[0]", "firing", ("a:firing", "b:firing")),
        ("ops", "webhook[1]", "firing", ("a:firing",)),
        ("ops", "webhook[1]", "firing", ("a:firing", "b:firing")),
    ]
    disk = next(r for r in rows if r["integration"] == "webhook[0]" and len(r["payload"]["alerts"]) == 2)
    assert disk["group_key"] == '{}:{alertname="DiskFull"}'
    assert disk["payload"] == {
        "receiver": "ops", "status": "firing", "version": "4", "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0, "externalURL": URL,
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull", "job": "node"},
        "commonAnnotations": {},
        "alerts": [  # sorted by job, then instance
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "a", "job": "node"},
             "annotations": {"summary": "a full"}, "startsAt": "2026-03-02T10:00:00Z", "endsAt": ZERO,
             "generatorURL": f"{URL}/alerts",
             "fingerprint": fingerprint({"alertname": "DiskFull", "instance": "a", "job": "node"})},
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "b", "job": "node"},
             "annotations": {"summary": "b full"}, "startsAt": "2026-03-02T10:00:00Z", "endsAt": ZERO,
             "generatorURL": f"{URL}/alerts",
             "fingerprint": fingerprint({"alertname": "DiskFull", "instance": "b", "job": "node"})},
        ],
    }
    assert disk["created_at"] == T0 + 30
    assert rig.tick(T0 + 31) == [] and rig.tick(T0 + 400) == []  # nothing changed: no repeat before 4 h


def test_new_alert_waits_for_group_interval_and_repeat_after_repeat_interval(rig):
    rig.put({"alertname": "DiskFull", "instance": "a"})
    assert len(rig.tick(T0 + 30)) == 2
    rig.now = T0 + 60
    rig.put({"alertname": "DiskFull", "instance": "b"})
    assert rig.tick(T0 + 60) == [] and rig.tick(T0 + 329) == []  # the group flushes every 5 min from T0 + 30
    assert summary(rig.tick(T0 + 330)) == [("ops", "webhook[0]", "firing", ("a:firing", "b:firing")),
                                          ("ops", "webhook[1]", "firing", ("a:firing", "b:firing"))]
    # Nothing new: the next notification is the repeat, at the first flush more than 4 h after
    # the last one (T0 + 330; T0 + 330 + 4 h is not *more* than 4 h).
    for k in range(2, 50):
        assert rig.tick(T0 + 30 + 300 * k) == [], k
    assert len(rig.tick(T0 + 30 + 300 * 50)) == 2


def test_resolved_notified_once_and_not_to_send_resolved_false(rig):
    rig.put({"alertname": "DiskFull", "instance": "a"})
    rig.put({"alertname": "DiskFull", "instance": "b"})
    assert len(rig.tick(T0 + 30)) == 2
    rig.now = T0 + 100
    rig.put({"alertname": "DiskFull", "instance": "a"}, starts_at=T0, ends_at=T0 + 100)
    rows = rig.tick(T0 + 330)
    # webhook[1] has send_resolved false: a resolved alert alone is no reason to notify it.
    assert summary(rows) == [("ops", "webhook[0]", "firing", ("a:resolved", "b:firing"))]
    resolved = rows[0]["payload"]["alerts"][0]
    assert (resolved["endsAt"], resolved["startsAt"]) == ("2026-03-02T10:01:40Z", "2026-03-02T10:00:00Z")
    rig.now = T0 + 400
    rig.put({"alertname": "DiskFull", "instance": "b"}, starts_at=T0, ends_at=T0 + 400)
    rows = rig.tick(T0 + 630)
    # All resolved: the webhook with send_resolved gets the resolution (a was resolved before and
    # leaves the group after its flush); the other is told nothing but forgets the group.
    assert summary(rows) == [("ops", "webhook[0]", "resolved", ("b:resolved",))]
    assert rows[0]["payload"]["status"] == "resolved"
    assert rig.tick(T0 + 930) == [] and rig.tick(T0 + 30 + 5 * 3600) == []
    # Resolved for longer than the store's retention (15 min): collected by the rounds.
    assert rig.store.get(fingerprint({"alertname": "DiskFull", "instance": "a"})) is None
    # Firing again: a first notification for both integrations, at once (the alert is old).
    rig.now = T0 + 5 * 3600
    rig.put({"alertname": "DiskFull", "instance": "b"}, starts_at=T0 + 4000)
    assert summary(rig.tick(T0 + 5 * 3600 + 1)) == [("ops", "webhook[0]", "firing", ("b:firing",)),
                                                   ("ops", "webhook[1]", "firing", ("b:firing",))]


def test_old_alert_flushes_at_once_and_continue_sends_to_both_receivers(rig):
    rig.now = T0 + 600
    rig.put({"alertname": "Down", "instance": "a", "severity": "page", "team": "db"}, starts_at=T0)
    rig.put({"alertname": "Down", "instance": "b", "severity": "page"}, starts_at=T0)
    rows = rig.tick(T0 + 600)  # started 10 min ago: no group_wait
    # severity=page continues to the next matching sibling (team=db); b matches no other
    # sibling, and a route whose child matched is not itself a match (no "ops").
    assert summary(rows) == [("db", "webhook[0]", "firing", ("a:firing",)),
                             ("pager", "webhook[0]", "firing", ("a:firing",))]  # max_alerts: 1
    pager = next(r for r in rows if r["receiver"] == "pager")
    assert pager["payload"]["truncatedAlerts"] == 1
    assert pager["group_key"] == '{}/{severity="page"}:{alertname="Down"}'


def test_max_alerts_truncates_and_group_by_all_makes_a_group_per_alert(rig):
    for instance in ("a", "b", "c"):
        rig.put({"alertname": "Down", "instance": instance, "severity": "page"})
        rig.put({"alertname": "Slow", "instance": instance, "team": "db"})
    rows = rig.tick(T0 + 30)
    pager = [r for r in rows if r["receiver"] == "pager"]
    assert len(pager) == 1
    assert (len(pager[0]["payload"]["alerts"]), pager[0]["payload"]["truncatedAlerts"]) == (1, 2)
    db = sorted((r for r in rows if r["receiver"] == "db"), key=lambda r: r["group_key"])
    assert [r["payload"]["groupLabels"] for r in db] == [
        {"alertname": "Slow", "instance": i, "team": "db"} for i in ("a", "b", "c")]
    assert db[0]["group_key"] == '{}/{team="db"}:{alertname="Slow", instance="a", team="db"}'


def test_muted_alerts_are_left_out_and_notify_once_unmuted(rig):
    rig.muter.instances = {"b"}
    rig.put({"alertname": "DiskFull", "instance": "a"})
    rig.put({"alertname": "DiskFull", "instance": "b"})
    rig.put({"alertname": "Load", "instance": "b"})
    assert summary(rig.tick(T0 + 30)) == [("ops", "webhook[0]", "firing", ("a:firing",)),
                                          ("ops", "webhook[1]", "firing", ("a:firing",))]
    rig.muter.instances = set()
    assert summary(rig.tick(T0 + 330)) == [("ops", "webhook[0]", "firing", ("a:firing", "b:firing")),
                                           ("ops", "webhook[0]", "firing", ("b:firing",)),
                                           ("ops", "webhook[1]", "firing", ("a:firing", "b:firing")),
                                           ("ops", "webhook[1]", "firing", ("b:firing",))]


def test_inhibition_by_configured_and_default_rules(rig):
    rig.put({"alertname": "ClusterDown", "cluster": "c1", "severity": "critical"})
    rig.put({"alertname": "Lag", "cluster": "c1", "severity": "warning", "instance": "in-c1"})
    rig.put({"alertname": "Lag", "cluster": "c2", "severity": "warning", "instance": "in-c2"})
    rig.put({"alertname": "HostDown", "host": "h1", "instance": "h1"})
    rig.put({"alertname": "DiskFull", "host": "h1", "instance": "h1"})
    rig.put({"alertname": "DiskFull", "host": "h2", "instance": "h2"})
    rows = [r for r in rig.tick(T0 + 30) if r["integration"] == "webhook[0]"]
    assert summary(rows) == [("ops", "webhook[0]", "firing", (":firing",)),  # ClusterDown
                             ("ops", "webhook[0]", "firing", ("h1:firing",)),  # HostDown
                             ("ops", "webhook[0]", "firing", ("h2:firing",)),  # DiskFull of h2 only
                             ("ops", "webhook[0]", "firing", ("in-c2:firing",))]  # Lag of c2 only
    assert rig.muting.muted_by({"alertname": "DiskFull", "host": "h1"}, T0 + 30) == [
        f"inhibited:{NotifyAlert({'alertname': 'HostDown', 'host': 'h1', 'instance': 'h1'}).fingerprint}"]
    # The source resolves: the inhibited alerts notify at their group's next flush.
    rig.now = T0 + 60
    rig.put({"alertname": "HostDown", "host": "h1", "instance": "h1"}, starts_at=T0, ends_at=T0 + 60)
    rows = [r for r in rig.tick(T0 + 330) if r["integration"] == "webhook[0]"]
    assert summary(rows) == [("ops", "webhook[0]", "firing", ("h1:firing", "h2:firing")),
                             ("ops", "webhook[0]", "resolved", ("h1:resolved",))]


def test_mute_and_active_time_intervals_in_their_zone(rig):
    # T0 is Monday 10:00 UTC = 18:00 in Shanghai: outside office hours there.
    rig.put({"alertname": "Backup", "team": "night", "instance": "n"})
    rig.put({"alertname": "Deploy", "team": "day", "instance": "d"})
    rows = rig.tick(T0 + 30)
    assert [r["payload"]["groupLabels"]["alertname"] for r in rows if r["integration"] == "webhook[0]"] == ["Backup"]
    # Tuesday 09:00 Shanghai = Tuesday 01:00 UTC, inside office hours: the day route notifies,
    # the night route is muted (so nothing new for it either).
    tuesday = datetime(2026, 3, 3, 1, 0, tzinfo=timezone.utc).timestamp()
    rows = rig.tick(tuesday)
    assert [r["payload"]["groupLabels"]["alertname"] for r in rows if r["integration"] == "webhook[0]"] == ["Deploy"]
    # The reasons muting reports (history, API): only when every route of the alert is muted.
    assert rig.muting.muted_by({"alertname": "Backup", "team": "night"}, tuesday) == ["time_interval:office-hours"]
    assert rig.muting.muted_by({"alertname": "Deploy", "team": "day"}, tuesday) == []
    assert rig.muting.muted_by({"alertname": "Deploy", "team": "day"}, T0) == ["time_interval:office-hours"]
    assert rig.muting.muted_by({"alertname": "Backup", "team": "night"}, T0) == []
    assert rig.muting.muted_by({"alertname": "Backup", "team": "night", "severity": "page"}, tuesday) == []


def test_same_round_twice_and_restart_do_not_notify_again(rig, db_url):
    rig.put({"alertname": "DiskFull", "instance": "a"})
    first = rig.tick(T0 + 30)
    assert len(first) == 2
    assert len({r["dedup_key"] for r in first}) == 2
    # A restart: a new dispatcher on the same database and the same alerts.
    rig.close()
    again = Rig(rig.db, store=rig.store)
    again.seen = rig.seen
    rig.dispatcher = again.dispatcher  # closed by the fixture
    # The new dispatcher routes the stored alerts at its first round (the group is old
    # enough to flush at once) and reads its log from the rows: nothing is new.
    assert again.tick(T0 + 40) == [] and again.tick(T0 + 100) == []
    assert len(again.tick(T0 + 30 + 4 * 3600 + 300)) == 2  # the repeat is due from the logged time


def test_default_inhibit_rules_off(rig):
    rig.close()
    off = Rig(rig.db, default_inhibit_rules=False)
    rig.dispatcher = off.dispatcher  # closed by the fixture
    off.put({"alertname": "HostDown", "host": "h1", "instance": "h1"})
    off.put({"alertname": "DiskFull", "host": "h1", "instance": "h1"})
    rows = [r for r in off.tick(T0 + 30) if r["integration"] == "webhook[0]"]
    assert sorted(r["payload"]["groupLabels"]["alertname"] for r in rows) == ["DiskFull", "HostDown"]
    assert off.muting.muted_by({"alertname": "DiskFull", "host": "h1"}, T0 + 30) == []
