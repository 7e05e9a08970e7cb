"""The settings API's view of the configuration: sources named, credentials hidden."""
from __future__ import annotations

from console.admin.settings import effective_settings
from console.config import load_config


def by_key(doc: dict) -> dict:
    return {row["key"]: row for row in doc["console"]}


def test_sources_are_the_file_line_the_environment_the_flag_or_the_default(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("console:\n  session_days: 2\n  listen: 127.0.0.1:8711\napps: {}\n")
    doc = effective_settings(load_config(path, env={"FLEETDECK_DATA_DIR": str(tmp_path)},
                                         overrides={"max_series_per_query": 50}))
    rows = by_key(doc)
    assert doc["file"] == str(path)
    assert rows["session_days"] == {"key": "session_days", "value": 2.0, "default": 7.0,
                                    "source": f"{path} line 2"}
    assert rows["listen"]["source"] == f"{path} line 3"
    assert rows["data_dir"] == {"key": "data_dir", "value": str(tmp_path), "default": "./var",
                                "source": "environment FLEETDECK_DATA_DIR"}
    assert rows["max_series_per_query"]["source"] == "command-line flag --max-series-per-query"
    assert rows["cookie_secure"]["source"] == "default"
    sections = {s["name"]: s for s in doc["sections"]}
    assert sections["apps"] == {"name": "apps", "configured": False, "source": f"{path} line 4"}
    assert sections["probes"] == {"name": "probes", "configured": False, "source": "default"}


def test_the_database_password_is_never_shown(tmp_path):
    url = "postgresql+psycopg://fleetdeck:s3cret-pw@db.example:5432/fleetdeck"
    doc = effective_settings(load_config(None, env={"FLEETDECK_DATABASE_URL": url}))
    shown = by_key(doc)["database_url"]["value"]
    assert shown == "postgresql+psycopg://fleetdeck:***@db.example:5432/fleetdeck"
    assert "s3cret-pw" not in str(doc)


def test_the_read_replica_password_is_never_shown():
    primary = "postgresql+psycopg://fleetdeck:s3cret-pw@db.example:5432/fleetdeck"
    doc = effective_settings(load_config(None, env={"FLEETDECK_DATABASE_URL": primary,
                                                    "FLEETDECK_DATABASE_READ_URL": primary.replace("db.", "ro.")}))
    assert by_key(doc)["database_read_url"]["value"] == "postgresql+psycopg://fleetdeck:***@ro.example:5432/fleetdeck"
    assert "s3cret-pw" not in str(doc)
