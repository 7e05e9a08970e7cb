"""``fleetdeck audit verify`` (a real process) detects a truncated tail: entries are written
through the real console over HTTP and by the CLI process, then the newest entry, the
newest 20 or all of them are deleted from the database directly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.harness import ConsoleHarness

REPO = Path(__file__).resolve().parents[2]


def cli(harness: ConsoleHarness, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_DATA_DIR=str(harness.config.data_dir))
    env.pop("FLEETDECK_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "console.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def audited(tmp_path):
    harness = ConsoleHarness(tmp_path / "console").start()
    harness.admin = harness.api_token("admin", "admin")
    for i in range(25):
        resp = harness.request("POST", "/api/v1/tokens", {"kind": "api", "name": f"t{i}", "role": "viewer"},
                               token=harness.admin)
        assert resp.status == 201, resp.body
    yield harness
    harness.close()


def verify(harness: ConsoleHarness) -> dict:
    return harness.request("GET", "/api/v1/audit/verify", token=harness.admin).json()


def entry_ids(harness: ConsoleHarness) -> list[int]:
    return harness.services.db.run(lambda s: list(s.execute(text("SELECT id FROM audit_log ORDER BY id")).scalars()))


@pytest.mark.parametrize("deleted", [1, 20, "all"])
def test_deleting_the_newest_entries_is_reported(audited, deleted):
    h = audited
    ids = entry_ids(h)
    assert len(ids) >= 25
    assert verify(h) == {"ok": True, "entries": len(ids), "first_bad_id": None, "reason": None,
                         "anchored_id": ids[-1]}

    doomed = ids if deleted == "all" else ids[-deleted:]
    h.services.db.run(lambda s: s.execute(text("DELETE FROM audit_log WHERE id >= :first"), {"first": doomed[0]}))

    tampered = cli(h, "audit", "verify")
    assert tampered.returncode == 1, tampered.stdout
    assert f"audit log TAMPERED: entry {ids[-1]}: entry {ids[-1]}, the anchored head, is missing" in tampered.stderr
    assert f"({len(ids) - len(doomed)} remain)" in tampered.stderr


def test_an_entry_written_in_place_of_a_deleted_newest_one_is_reported(audited):
    h = audited
    # Another process (the CLI) appends: the head follows it.
    made = cli(h, "token", "create", "--name", "from-cli", "--role", "viewer")
    assert made.returncode == 0, made.stderr
    ids = entry_ids(h)
    assert verify(h)["anchored_id"] == ids[-1]
    h.services.db.run(lambda s: s.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[-1]}))
    # SQLite gives the next entry the freed id; its chain is whole, but it is not the anchored entry.
    assert h.request("POST", "/api/v1/tokens", {"kind": "api", "name": "after", "role": "viewer"},
                     token=h.admin).status == 201
    assert entry_ids(h)[-1] == ids[-1]
    result = verify(h)
    assert result["ok"] is False and "is not the one the head anchor names" in result["reason"]


def test_a_removed_or_forged_head_is_reported(audited):
    h = audited
    assert verify(h)["ok"] is True
    head = h.config.data_dir / "audit_head"
    assert oct(head.stat().st_mode & 0o777) == "0o600"
    assert oct((h.config.data_dir / "audit_head.key").stat().st_mode & 0o777) == "0o600"
    original = head.read_bytes()
    head.write_text('{"id": 3, "hash": "00", "mac": "00"}')
    forged = verify(h)
    assert forged["ok"] is False and "does not carry a valid HMAC" in forged["reason"]
    # A later entry does not overwrite the evidence.
    assert h.request("POST", "/api/v1/tokens", {"kind": "api", "name": "later", "role": "viewer"},
                     token=h.admin).status == 201
    assert "does not carry a valid HMAC" in verify(h)["reason"]
    head.unlink()
    missing = verify(h)
    assert missing["ok"] is False and "is missing" in missing["reason"]
    head.write_bytes(original)
    assert verify(h)["ok"] is True  # the entries after the restored head still chain from it
