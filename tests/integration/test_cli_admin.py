"""The admin commands of ``fleetdeck`` as real processes against the database of a real
console process (``fleetdeck serve``), each checked by its effect over HTTP: ``user``
(create, set, disable, enable, set-password), ``token list`` and ``token revoke``,
``audit`` and ``audit verify``, ``secrets set/list/rotate``, ``db upgrade`` of a database
left at the first migration, and, with a real sshd, ``hosts trust``/``hosts known`` and
``cancel`` of a running deploy."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.harness import CookieSession, http, wait_for
from tests.integration.procs import REPO, ConsoleProcess, child_env


def fleetdeck(console: ConsoleProcess | dict, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """``fleetdeck ARGS`` with the environment of ``console`` (or that environment)."""
    base = console if isinstance(console, dict) else console.env
    return subprocess.run([sys.executable, "-m", "console.cli", *args], env={**base, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120, input=stdin)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    console = ConsoleProcess(tmp_path_factory.mktemp("cli-admin")).start()
    yield console
    console.stop()


def test_user_commands_take_effect_on_logins_and_sessions(served):
    name = "ops-" + uuid.uuid4().hex[:6]
    out = ok(fleetdeck(served, "user", "create", name, "--role", "viewer", stdin="first-password-1\n"))
    assert f"created user '{name}' with role viewer" in out
    session = CookieSession(served.url)
    assert session.login(name, "first-password-1").status == 302
    assert session.request("GET", "/api/v1/hosts").status == 200
    assert session.request("GET", "/api/v1/users").status == 403  # a viewer
    ok(fleetdeck(served, "user", "set", name, "--role", "admin"))
    listed = json.loads(ok(fleetdeck(served, "user", "list", "--json")))
    assert [(u["role"], u["disabled"]) for u in listed if u["username"] == name] == [("admin", False)]
    # a role change ends the user's sessions; the next login has the new role
    wait_for(lambda: session.request("GET", "/api/v1/hosts").status == 401, 10, "the session to end")
    assert session.login(name, "first-password-1").status == 302
    assert session.request("GET", "/api/v1/users").status == 200

    last = fleetdeck(served, "user", "disable", name)
    if "admin" not in {u["role"] for u in listed if u["username"] != name and not u["disabled"]}:
        assert last.returncode == 2 and f"'{name}' is the last enabled admin" in last.stderr
        ok(fleetdeck(served, "user", "create", "keeper-" + name, "--role", "admin", stdin="keeper-password-1\n"))
        ok(fleetdeck(served, "user", "disable", name))
    wait_for(lambda: session.request("GET", "/api/v1/hosts").status == 401, 10, "the session to end")
    assert CookieSession(served.url).login(name, "first-password-1").status != 302
    ok(fleetdeck(served, "user", "enable", name))
    assert session.login(name, "first-password-1").status == 302

    out = ok(fleetdeck(served, "user", "set-password", name, FLEETDECK_PASSWORD="second-password-2"))
    assert "sessions ended" in out
    wait_for(lambda: session.request("GET", "/api/v1/hosts").status == 401, 10, "the session to end")
    assert CookieSession(served.url).login(name, "first-password-1").status != 302
    assert CookieSession(served.url).login(name, "second-password-2").status == 302
    refused = fleetdeck(served, "user", "create", name, "--role", "viewer", stdin="third-password-3\n")
    assert refused.returncode == 2 and name in refused.stderr


def test_token_list_shows_no_secret_and_revoke_ends_the_token(served):
    name = "ci-" + uuid.uuid4().hex[:6]
    token = ok(fleetdeck(served, "token", "create", "--name", name, "--role", "viewer")).strip()
    assert http("GET", served.url + "/api/v1/hosts", headers={"Authorization": f"Bearer {token}"}).status == 200
    raw = ok(fleetdeck(served, "token", "list", "--json"))
    assert token not in raw
    mine = [t for t in json.loads(raw) if t["name"] == name]
    assert len(mine) == 1 and mine[0]["kind"] == "api" and mine[0]["role"] == "viewer" and not mine[0]["revoked_at"]
    table = ok(fleetdeck(served, "token", "list"))
    assert any(name in line and "active" in line for line in table.splitlines())

    out = ok(fleetdeck(served, "token", "revoke", str(mine[0]["id"])))
    assert f"revoked token {mine[0]['id']} (api {name})" in out
    wait_for(lambda: http("GET", served.url + "/api/v1/hosts",
                          headers={"Authorization": f"Bearer {token}"}).status == 401, 10, "the token to stop working")
    assert [t for t in json.loads(ok(fleetdeck(served, "token", "list", "--json"))) if t["name"] == name] == []
    revoked = [t for t in json.loads(ok(fleetdeck(served, "token", "list", "--all", "--json"))) if t["name"] == name]
    assert len(revoked) == 1 and revoked[0]["revoked_at"]
    missing = fleetdeck(served, "token", "revoke", "999999")
    assert missing.returncode == 1 and missing.stdout == ""


def test_audit_lists_cli_actions_and_verify_checks_the_chain(served):
    name = "aud-" + uuid.uuid4().hex[:6]
    ok(fleetdeck(served, "user", "create", name, "--role", "viewer", stdin="audited-password-1\n"))
    entries = json.loads(ok(fleetdeck(served, "audit", "--json", "--limit", "5")))
    assert len(entries) <= 5
    created = [e for e in entries if e["action"] == "user.create" and name in e["target"]]
    assert len(created) == 1 and created[0]["actor"].startswith("cli:") and created[0]["source"] == "cli"
    assert "audited-password-1" not in json.dumps(entries)
    table = ok(fleetdeck(served, "audit", "--limit", "5"))
    assert table.split()[:4] == ["ID", "TIME", "(UTC)", "ACTOR"] and name in table
    verified = fleetdeck(served, "audit", "verify")
    assert verified.returncode == 0 and "audit log intact" in verified.stdout, verified.stderr
    with sqlite3.connect(served.data_dir / "fleetdeck.db") as conn:  # tamper with the stored entry
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE id = ?", (created[0]["id"],))
    tampered = fleetdeck(served, "audit", "verify")
    assert tampered.returncode == 1 and f"entry {created[0]['id']}" in tampered.stderr, tampered.stderr
    with sqlite3.connect(served.data_dir / "fleetdeck.db") as conn:  # put it back for the other tests
        conn.execute("UPDATE audit_log SET actor = ? WHERE id = ?", (created[0]["actor"], created[0]["id"]))
    assert fleetdeck(served, "audit", "verify").returncode == 0


def test_secrets_set_list_and_rotate_keep_values_readable(served, tmp_path):
    from cryptography.fernet import Fernet

    name = "hook-" + uuid.uuid4().hex[:6]
    value = "https://hooks.example.test/" + uuid.uuid4().hex
    out = ok(fleetdeck(served, "secrets", "set", name, "--kind", "webhook_url", stdin=value))
    assert f"stored secret '{name}' (webhook_url)" in out
    raw = ok(fleetdeck(served, "secrets", "list", "--json"))
    assert value not in raw
    assert [(s["kind"], s["updated_by"].startswith("cli:")) for s in json.loads(raw) if s["name"] == name] == [
        ("webhook_url", True)]
    bad = fleetdeck(served, "secrets", "set", "bad name!", "--kind", "generic", stdin="x")
    assert bad.returncode == 2 and "bad name!" not in ok(fleetdeck(served, "secrets", "list"))

    # rotate: a new first key, the old one second; every secret re-encrypted under the new key
    old_key = (served.data_dir / "secret.key").read_text().strip()
    new_key = Fernet.generate_key().decode()
    both = f"{new_key},{old_key}"
    out = ok(fleetdeck(served, "secrets", "rotate", FLEETDECK_SECRET_KEY=both))
    assert "re-encrypted" in out and int(out.split()[1]) >= 1
    from cryptography.fernet import InvalidToken

    with sqlite3.connect(served.data_dir / "fleetdeck.db") as conn:
        (ciphertext,) = conn.execute("SELECT ciphertext FROM secrets WHERE name = ?", (name,)).fetchone()
    assert Fernet(new_key.encode()).decrypt(ciphertext.encode()).decode() == value
    with pytest.raises(InvalidToken):  # the old key alone no longer reads it
        Fernet(old_key.encode()).decrypt(ciphertext.encode())


def test_db_upgrade_brings_a_database_at_the_first_migration_to_the_schema_of_a_fresh_one(tmp_path):
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine, inspect, text

    from console.storage.database import MIGRATIONS_DIR

    def schema(path: Path) -> tuple[set[str], dict[str, list[str]]]:
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                versions = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
            found = inspect(engine)
            return versions, {t: sorted(c["name"] for c in found.get_columns(t)) for t in found.get_table_names()}
        finally:
            engine.dispose()

    fresh, old = tmp_path / "fresh", tmp_path / "old"
    assert "created the database" in ok(fleetdeck(child_env(FLEETDECK_DATA_DIR=str(fresh)), "init"))
    old.mkdir()
    engine = create_engine(f"sqlite:///{old / 'fleetdeck.db'}")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    engine.dispose()
    assert schema(old / "fleetdeck.db")[0] == {"0001"} != schema(fresh / "fleetdeck.db")[0]

    env = child_env(FLEETDECK_DATA_DIR=str(old))
    out = ok(fleetdeck(env, "db", "upgrade"))
    assert f"database at head: {(old / 'fleetdeck.db').resolve()}" in out
    assert schema(old / "fleetdeck.db") == schema(fresh / "fleetdeck.db")
    assert ok(fleetdeck(env, "db", "upgrade")) == out  # again: nothing to do, same answer


@pytest.fixture(scope="module")
def ssh_console(tmp_path_factory, sshd):
    """A console process whose app ``slow`` runs a 60 s step on the test sshd."""
    root = tmp_path_factory.mktemp("cli-ssh")
    config = root / "fleetdeck.yaml"
    config.write_text(yaml.safe_dump({
        "inventory": {"hosts": {"box": {"address": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                                        "key": "box-key"}}},
        "apps": {"slow": {"driver": "ssh", "target": {
            "hosts": ["box"], "deploy_to": str(root / "srv"),
            "steps": [{"name": "wait", "run": ["sleep", "60"], "timeout": 120}]}}},
    }))
    console = ConsoleProcess(root / "data", FLEETDECK_CONFIG=str(config))
    (root / "data").mkdir()
    console.start()
    console.sshd = sshd
    yield console
    console.stop()


def test_hosts_trust_then_known_lists_the_pin_and_cancel_stops_a_running_deploy(ssh_console):
    console, sshd = ssh_console, ssh_console.sshd
    assert json.loads(ok(fleetdeck(console, "hosts", "known", "--json"))) == []
    ok(fleetdeck(console, "secrets", "set", "box-key", "--kind", "ssh_key", "--file", str(sshd.client_key)))
    key = sshd.known_hosts_line.split(maxsplit=1)[1]
    out = ok(fleetdeck(console, "hosts", "trust", "box", "--key", key))
    assert "pinned" in out
    known = json.loads(ok(fleetdeck(console, "hosts", "known", "--json")))
    assert [(k["host"], k["key_type"]) for k in known] == [("box", key.split()[0])]
    assert known[0]["fingerprint"] in ok(fleetdeck(console, "hosts", "known"))

    token = ok(fleetdeck(console, "token", "create", "--name", "deployer", "--role", "deployer")).strip()
    client = {"FLEETDECK_URL": console.url, "FLEETDECK_TOKEN": token}
    started = json.loads(ok(fleetdeck(console, "deploy", "slow", "1.0", "--json", **client)))

    def state() -> dict:
        return json.loads(http("GET", f"{console.url}/api/v1/deploys/{started['id']}",
                               headers={"Authorization": f"Bearer {token}"}).body)

    def events() -> list[str]:
        body = http("GET", f"{console.url}/api/v1/deploys/{started['id']}/events",
                    headers={"Authorization": f"Bearer {token}"}).body
        return [e["message"] for e in json.loads(body)["events"]]

    wait_for(lambda: "Accepted publickey" in sshd.log() and state()["state"] == "running", 60,
             "the deploy to run its step on the host")
    before = time.monotonic()
    out = ok(fleetdeck(console, "cancel", str(started["id"]), **client))
    assert f"deploy #{started['id']} of slow: cancel requested" in out
    final = wait_for(lambda: (s := state())["state"] not in ("queued", "running") and s, 50, "the deploy to stop")
    assert final["state"] == "cancelled", (final, events())
    assert time.monotonic() - before < 50  # the 60 s step was cut short
    assert any("cancel requested by" in m for m in events())
    again = fleetdeck(console, "cancel", str(started["id"]), **client)
    assert again.returncode == 1 and f"deploy {started['id']} is already cancelled" in again.stderr, again.stderr
    assert fleetdeck(console, "cancel", "999999", **client).returncode == 1
