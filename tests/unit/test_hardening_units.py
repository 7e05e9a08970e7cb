"""Units of the hardening: the login redirect target, the agent's own name checks (the
same rules as the console's, so a trailing newline never passes either), and the
password pool."""
from __future__ import annotations

import asyncio

import pytest

from agents.agent import _invalid_reason
from agents.config import AgentConfig, ConfigError, validate
from collectors.base import Sample
from console.auth.passwords import Passwords, PasswordsBusy
from console.auth.users import UserService
from console.storage import Database
from console.ui.handlers import safe_next


@pytest.mark.parametrize("target", [
    "/", "/hosts/web-1", "/logs?q=error&host=a", "/deploys/12#events", "/hosts/a%2Fb", "/%09/evil.example/phish",
])
def test_safe_next_keeps_paths_of_this_console(target):
    assert safe_next(target) == target


@pytest.mark.parametrize("target", [
    None, "", "hosts", "//evil.example", "///evil.example", "/\t/evil.example/phish", "/\n/evil.example",
    "/\r\n/evil.example", "\t//evil.example", " /x", "/\\evil.example", "\\\\evil.example", "/\x00/x",
    "/\x7f/x", "http://evil.example/", "https:/evil.example", "javascript:alert(1)", "/\u2028/x",
    "/caf\u00e9", "/a b",
])
def test_safe_next_refuses_other_hosts_controls_and_backslashes(target):
    assert safe_next(target) == "/"


def test_agent_name_checks_refuse_a_trailing_newline():
    assert _invalid_reason(Sample("node_load1", {"job": "x"}, 1.0)) is None
    assert _invalid_reason(Sample("node_load1\n", {}, 1.0)) is not None
    assert _invalid_reason(Sample("node_load1", {"job\n": "x"}, 1.0)) is not None
    validate(AgentConfig(host="host-a"))
    with pytest.raises(ConfigError):
        validate(AgentConfig(host="host-a\n"))


def test_password_pool_is_bounded_and_a_password_change_mid_login_wins(tmp_path):
    passwords = Passwords(workers=1, max_waiting=2)

    async def flood() -> list:
        checks = [passwords.verify_off_thread(None, "wrong-password") for _ in range(3)]
        return await asyncio.gather(*checks, return_exceptions=True)

    try:
        results = asyncio.run(flood())
        assert results[:2] == [False, False] and isinstance(results[2], PasswordsBusy)
    finally:
        passwords.close()

    db = Database(f"sqlite:///{tmp_path / 'u.db'}")
    db.migrate()
    users = UserService()
    try:
        db.run(users.create, "alice", "first-password", "viewer")
        verified = db.run(users.stored_hash, "alice")
        assert users.passwords.verify(verified, "first-password")
        db.run(users.set_password, "alice", "second-password")  # between the check and the session
        assert db.run(users.confirm_login, "alice", verified) is None
        fresh = db.run(users.stored_hash, "alice")
        assert db.run(users.confirm_login, "alice", fresh).name == "alice"
        db.run(lambda s: users.update(s, "alice", disabled=True))
        assert db.run(users.stored_hash, "alice") is None and db.run(users.confirm_login, "alice", fresh) is None
    finally:
        users.passwords.close()
        db.close()
