"""An unusable secret key is a configuration error: ``fleetdeck run`` refuses to start
naming the key's source (exit 2), rather than blaming the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_run_refuses_a_malformed_secret_key_as_configuration(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_DATA_DIR=str(tmp_path / "data"),
               FLEETDECK_SECRET_KEY="not-a-fernet-key")
    env.pop("FLEETDECK_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "console.cli", "run", "--listen", "127.0.0.1:0"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "configuration: FLEETDECK_SECRET_KEY: key 1 is not a Fernet key" in result.stderr, result.stderr
    assert "cannot open the database" not in result.stderr
