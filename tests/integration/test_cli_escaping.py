"""Every CLI output of stored text is escaped like ``fleetdeck logs``: the CLI runs as a
real process against a real console holding hostile text (ESC sequences, BEL, an OSC
title change, CR, a bidi override) in a token name, a deploy reason and the deploy
events that name the requester."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ConsoleHarness

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "ci\x1b]0;pwned\x07\x1b[2J\rover\u202eevil"
ESCAPED = "ci\\x1b]0;pwned\\x07\\x1b[2J\\rover\\u202eevil"
RAW = ("\x1b", "\x07", "\r", "\u202e", "\x9b")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-escaping")
    # An app whose deploys fail at once (its kubeconfig secret does not exist): events and
    # an error, without a cluster.
    apps = {"shop": {"driver": "kubernetes", "timeout": 30, "target": {
        "image": "registry.example.com/shop", "deployment": "shop", "kubeconfig_secret": "absent"}}}
    harness = ConsoleHarness(root / "console", apps=apps).start()
    admin = harness.api_token("admin", "admin")
    resp = harness.request("POST", "/api/v1/tokens", {"kind": "api", "name": HOSTILE, "role": "deployer"},
                           token=admin)
    assert resp.status == 201, resp.body
    harness.cli_env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_URL=harness.url,
                           FLEETDECK_TOKEN=resp.json()["token"], FLEETDECK_DATA_DIR=str(harness.config.data_dir))
    harness.cli_env.pop("FLEETDECK_CONFIG", None)
    yield harness
    harness.close()


def cli(env: ConsoleHarness, *args: str) -> subprocess.CompletedProcess:
    # Bytes decoded by hand: text mode would turn a raw CR into a newline and hide it.
    proc = subprocess.run([sys.executable, "-m", "console.cli", *args], env=env.cli_env,
                          capture_output=True, timeout=120)
    proc.stdout, proc.stderr = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    return proc


def assert_escaped(proc: subprocess.CompletedProcess) -> None:
    shown = proc.stdout + proc.stderr
    for raw in RAW:
        assert raw not in shown, f"raw {raw!r} printed: {shown!r}"
    assert ESCAPED in shown, shown


def test_deploy_wait_deploys_and_token_list_escape_stored_text(env):
    waited = cli(env, "deploy", "shop", "1.0", "--reason", HOSTILE, "--wait")
    assert waited.returncode == 1, waited.stderr  # the deploy fails (no kubeconfig secret)
    assert_escaped(waited)  # "deploy of shop 1.0 requested by api:<hostile name>"

    listed = cli(env, "deploys", "shop")
    assert listed.returncode == 0, listed.stderr
    assert_escaped(listed)  # BY column
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\rover" in listed.stdout.replace("\n", "")  # REASON (cut at 40)

    tokens = cli(env, "token", "list")
    assert tokens.returncode == 0, tokens.stderr
    assert_escaped(tokens)

    audit = cli(env, "audit", "--limit", "20")
    assert audit.returncode == 0, audit.stderr
    assert_escaped(audit)
