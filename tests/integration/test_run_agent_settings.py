"""``fleetdeck run`` checks its local agent's settings (the config file's ``agent:``
section) before it creates anything: a key the agent would refuse stops the start with
the agent's own message, naming the key and the user's file and line (exit 2), not a
console whose agent exits and is restarted every 10 s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("section, message", [
    ("agent:\n  interval: 10\n  series_limt: 5\n", r"unknown key 'series_limt' in agent settings \(from {path} line 5\)"),
    ("agent:\n  collector_options:\n    host: {netdev_device_exlude: '^lo$'}\n",
     r"collector_options.host.netdev_device_exlude \(from {path} line 4\) is not an option of the host input"),
])
def test_run_refuses_agent_settings_the_agent_would_refuse(tmp_path, section, message):
    config = tmp_path / "fleetdeck.yaml"
    config.write_text("console:\n  metrics_partition_hours: 24\n" + section)
    env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_DATA_DIR=str(tmp_path / "data"))
    env.pop("FLEETDECK_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "console.cli", "run", "--config", str(config),
                             "--listen", "127.0.0.1:0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "the local agent cannot start: " in result.stderr, result.stderr
    assert re.search(message.format(path=re.escape(str(config))), result.stderr), result.stderr
    assert not (tmp_path / "data").exists()  # nothing created: no database, no admin
    assert "password" not in result.stdout
