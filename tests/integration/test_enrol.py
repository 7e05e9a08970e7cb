"""``fleetdeck-agent enrol`` against a real console: the token file is written 0600 and the
agent then pushes with it (``--once``); a spent enrolment token is refused."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def agent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETDECK_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "agents", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_enrol_writes_token_file_and_agent_uses_it(console, tmp_path):
    _, enrol_token = console.services.db.run(console.services.tokens.create_enrol_token, 600.0)
    state = tmp_path / "state"
    config = tmp_path / "agent.yaml"
    config.write_text(f"agent:\n  console_url: {console.url}\n  host: enrolled-agent\n  state_dir: {state}\n")
    done = agent("enrol", "--config", str(config), "--enrol-token", enrol_token, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    token_file = state / "token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().strip().startswith("fda_")
    pushed = agent("--config", str(config), "--once", cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    hosts = console.request("GET", "/api/v1/hosts", token=console.api_token("viewer")).json()
    assert "enrolled-agent" in [h["host"] for h in hosts]
    again = agent("enrol", "--config", str(config), "--enrol-token", enrol_token, cwd=tmp_path)
    assert again.returncode == 2 and "enrolment_refused" in again.stderr


def test_an_unbound_enrolment_token_cannot_take_over_an_existing_host(console):
    host = "existing-" + os.urandom(4).hex()
    agent_token = console.agent_token(host)
    assert console.push(host, agent_token, [], [])[0] == 200
    tokens = console.services.tokens
    _, unbound = console.services.db.run(tokens.create_enrol_token, 600.0)
    resp = console.request("POST", "/api/v1/enrol", {"enrol_token": unbound, "host": host})
    assert resp.status == 403, resp.body
    assert resp.json()["error"]["code"] == "enrolment_refused" and "bound to it" in resp.json()["error"]["message"]
    # Not spent by the refusal: it still enrols a new host.
    fresh = "fresh-" + os.urandom(4).hex()
    resp = console.request("POST", "/api/v1/enrol", {"enrol_token": unbound, "host": fresh})
    assert resp.status == 201, resp.body
    # A host holding an agent token but that never pushed is existing too.
    quiet = "quiet-" + os.urandom(4).hex()
    console.agent_token(quiet)
    _, unbound = console.services.db.run(tokens.create_enrol_token, 600.0)
    assert console.request("POST", "/api/v1/enrol", {"enrol_token": unbound, "host": quiet}).status == 403
    # A token bound to the host re-enrols it.
    _, bound = console.services.db.run(tokens.create_enrol_token, 600.0, host)
    resp = console.request("POST", "/api/v1/enrol", {"enrol_token": bound, "host": host})
    assert resp.status == 201, resp.body
    assert resp.json()["token"].startswith("fda_")
