"""Principal.may_deploy, the failure limiter, secret keys and their rotation, and how often
a token lookup writes the token's last use."""
from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet

from console.audit.service import AuditService
from console.auth.limits import FailureLimiter
from console.auth.roles import Principal
from console.secrets import KeyConfigError, SecretBox, SecretError, SecretService, load_keys
from console.storage import Database


def test_may_deploy_respects_role_and_allow_list():
    assert Principal("user", "a", "admin", apps=("web",)).may_deploy("db")
    assert Principal("api", "ci", "deployer").may_deploy("anything")
    limited = Principal("user", "d", "deployer", apps=("web",))
    assert limited.may_deploy("web") and not limited.may_deploy("db")
    assert not Principal("user", "v", "viewer").may_deploy("web")
    assert not Principal("agent", "agent:h", "agent", host="h").may_deploy("web")
    assert Principal("user", "old", "viewer") == Principal("user", "old", "viewer", None, None)  # compatible


def test_failure_limiter_window_is_counted_in_the_database(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'l.db'}")
    db.migrate()
    now = [1000.0]
    limiter = FailureLimiter(db, 2, 60, clock=lambda: now[0])
    other = FailureLimiter(db, 2, 60, clock=lambda: now[0])  # another console on the same database

    async def run() -> None:
        assert await limiter.retry_after("k") is None
        await limiter.fail("k")
        await other.fail("k")
        assert await limiter.retry_after("k") == 60
        assert await other.retry_after("k") == 60
        now[0] += 30
        assert await other.retry_after("k") == 30
        now[0] += 31
        assert await limiter.retry_after("k") is None
        await limiter.fail("k")
        await other.reset("k")
        assert await limiter.retry_after("k") is None
    try:
        asyncio.run(run())
    finally:
        db.close()


def test_key_file_created_0600_and_env_wins(tmp_path):
    path = tmp_path / "d" / "secret.key"
    keys = load_keys(path, env={})
    assert path.stat().st_mode & 0o777 == 0o600 and len(keys) == 1
    assert load_keys(path, env={}) == keys
    other = Fernet.generate_key()
    assert load_keys(path, env={"FLEETDECK_SECRET_KEY": other.decode()}) == [other]
    with pytest.raises(KeyConfigError):
        load_keys(path, env={"FLEETDECK_SECRET_KEY": "not-a-key"})


def test_rotation_re_encrypts_under_the_new_key(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    db.migrate()
    old, new = Fernet.generate_key(), Fernet.generate_key()
    service = SecretService(SecretBox([old]), AuditService())
    kubeconfig = "users:\n- name: ci\n  user:\n    token: cluster-secret\n"
    db.run(service.put, "kube", "kubeconfig", kubeconfig, "cli")
    rotating = SecretService(SecretBox([new, old]), AuditService())
    assert db.run(rotating.rotate_all) == 1
    only_new = SecretService(SecretBox([new]), AuditService())
    assert db.run(only_new.reveal, "kube") == kubeconfig
    with pytest.raises(SecretError):
        db.run(service.reveal, "kube")  # the old key alone no longer opens it
    db.close()


def test_a_token_lookup_writes_its_last_use_at_most_every_resolution(tmp_path):
    """A lookup after the cache expired is read-only while the stored last use is fresher
    than LAST_USED_RESOLUTION_S (on SQLite the UPDATE waited for the ingest writers' lock
    on the IOLoop); the first use and a use after that long are written."""
    from sqlalchemy import event, select

    from console.auth.tokens import LAST_USED_RESOLUTION_S, TokenService
    from console.storage.models import Token

    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    db.migrate()
    now = [1_000.0]
    tokens = TokenService(db.sessions, clock=lambda: now[0], cache_seconds=10)
    with db.sessions() as session, session.begin():
        plaintext = tokens.create_agent_token(session, "web-1")
    updates: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: updates.append(statement) if statement.startswith("UPDATE tokens") else None)

    def stored() -> float | None:
        with db.sessions() as session:
            return session.execute(select(Token.last_used_at)).scalar_one()

    assert tokens.authenticate(plaintext).host == "web-1"
    assert stored() == 1_000.0 and len(updates) == 1
    for step in (11, 11, LAST_USED_RESOLUTION_S - 23):  # each past the cache, all within the resolution
        now[0] += step
        assert tokens.authenticate(plaintext).host == "web-1"
    assert stored() == 1_000.0 and len(updates) == 1
    now[0] += 11  # past the cache again: LAST_USED_RESOLUTION_S + 10 after the stored use
    assert tokens.authenticate(plaintext).host == "web-1"
    assert stored() == now[0] and len(updates) == 2
