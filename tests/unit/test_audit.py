"""The audit chain verifies, and any edit, deletion or reorder is detected."""
from __future__ import annotations

from sqlalchemy import delete, update

from console.audit.service import AuditService
from console.storage import Database
from console.storage.models import AuditEntry


def make(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    audit = AuditService()
    for i in range(5):
        db.run(audit.record, "user:alice", "deploy.create", f"web#{i}", {"version": f"1.{i}"}, "127.0.0.1")
    return db, audit


def test_chain_verifies(tmp_path):
    db, audit = make(tmp_path)
    result = db.run(audit.verify)
    assert (result.ok, result.entries) == (True, 5)
    assert [e["target"] for e in db.run(audit.entries)] == [f"web#{i}" for i in reversed(range(5))]


def test_edit_is_detected(tmp_path):
    db, audit = make(tmp_path)
    db.run(lambda s: s.execute(update(AuditEntry).where(AuditEntry.id == 3).values(actor="user:mallory")))
    result = db.run(audit.verify)
    assert (result.ok, result.first_bad_id) == (False, 3)


def test_deletion_is_detected(tmp_path):
    db, audit = make(tmp_path)
    db.run(lambda s: s.execute(delete(AuditEntry).where(AuditEntry.id == 2)))
    result = db.run(audit.verify)
    assert (result.ok, result.first_bad_id) == (False, 3)


def test_failed_action_writes_no_entry(tmp_path):
    db, audit = make(tmp_path)

    def action_then_fail(session):
        audit.record(session, "user:alice", "token.create", "ci")
        raise RuntimeError("the action itself failed")

    try:
        db.run(action_then_fail)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the action should have raised")
    assert db.run(audit.verify).entries == 5
