"""config.yaml documents every console option with its default; precedence; every refused
value names its key and its source (file and line, environment variable, flag), through the
loader and through the real `fleetdeck serve`; each section of a shared file is read by its
owner only (`fleetdeck run` with console, apps and inventory sections and no agent section)."""
from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agents.config import CONSOLE_SECTIONS
from agents.config import ConfigError as AgentConfigError
from agents.config import load_agent_config
from console.config import SECTIONS, ConfigError, ConsoleConfig, load_config
from tests.integration.procs import child_env, free_port

REPO = Path(__file__).resolve().parents[2]


def test_config_yaml_documents_every_console_option_with_its_default():
    document = yaml.safe_load((REPO / "config.yaml").read_text())
    fields = {name: f.default for name, f in ConsoleConfig.model_fields.items()}
    assert set(document["console"]) == set(fields)
    for name, default in fields.items():
        assert document["console"][name] == default, name
    text = (REPO / "config.yaml").read_text()
    for name in fields:
        assert f"FLEETDECK_{name.upper()}" in text, f"env variable of {name} undocumented"


def test_the_shipped_file_loads_to_the_defaults():
    assert load_config(REPO / "config.yaml", env={}).console == ConsoleConfig()


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  listen: 0.0.0.0:9000\n  max_body_bytes: 100000\n")
    config = load_config(path, env={"FLEETDECK_LISTEN": "127.0.0.1:9100"})
    assert config.console.listen == "127.0.0.1:9100"
    assert config.console.max_body_bytes == 100000
    config = load_config(path, env={"FLEETDECK_LISTEN": "127.0.0.1:9100"}, overrides={"listen": "127.0.0.1:9200"})
    assert config.console.listen == "127.0.0.1:9200"


def test_environment_values_are_converted_to_the_settings_types():
    config = load_config(None, env={"FLEETDECK_RETENTION_1H_DAYS": "800", "FLEETDECK_COOKIE_SECURE": "yes",
                                    "FLEETDECK_MAX_SERIES_PER_HOST": "7", "FLEETDECK_DATA_DIR": ""})
    assert (config.console.retention_1h_days, config.console.cookie_secure,
            config.console.max_series_per_host, config.console.data_dir) == (800.0, True, 7, "./var")


@pytest.mark.parametrize("text, message", [
    ("console:\n  nope: 1\n", r"^console\.nope: unknown key \(from .*c\.yaml line 2\)$"),
    ("consol: {}\n", r"unknown top-level section 'consol' \(line 1\)"),
    ("console:\n  max_body_bytes: lots\n",
     r"^console\.max_body_bytes: must be a valid integer.*got 'lots' \(from .*c\.yaml line 2\)$"),
    ("console:\n  listen: nowhere\n", r"^console\.listen: must be HOST:PORT.*got 'nowhere' \(from .*c\.yaml line 2\)$"),
    ("- a list\n", "mapping"),
    ("console: [1]\n", r"console \(.*c\.yaml line 1\): must be a mapping"),
    ("console:\n  data_dir: a\n  data_dir: b\n", r"c\.yaml line 3: console\.data_dir is given twice \(first on line 2\)"),
    ("console:\n  listen: [1\n", "invalid YAML"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml: no such file"):
        load_config(tmp_path / "absent.yaml", env={})


# Each refused value, by key: negative, NaN, infinity, the wrong type, true/false for a number.
REFUSED = [
    ("retention_1h_days", "-5", "must be greater than 0"),
    ("retention_raw_days", "0", "must be greater than 0"),
    ("retention_1m_days", "nan", "must be a finite number"),
    ("log_retention_days", "-1", "must be greater than or equal to 0"),
    ("log_retention_bytes", "-3", "must be greater than or equal to 0"),
    ("rollup_interval", "inf", "must be a finite number"),
    ("rollup_delay", "-120", "must be greater than or equal to 0"),
    ("sample_hot_window", "30", "must be greater than or equal to 60"),
    ("sample_hot_window", "nan", "must be a finite number"),
    ("sample_max_age", "-inf", "must be a finite number"),
    ("metrics_partition_hours", "0", "must be greater than or equal to 1"),
    ("samples_partition_hours", "0", "must be greater than or equal to 1"),
    ("log_partition_hours", "1.5", "must be a valid integer"),
    ("log_partition_hours", "9000", "must be less than or equal to 8784"),
    ("session_days", "1e400", "must be a finite number"),
    ("session_days", "100000", "must be less than or equal to 36500"),
    ("default_interval", "NaN", "must be a finite number"),
    ("down_after_intervals", "0", "must be greater than 0"),
    ("max_series_per_host", "0", "must be greater than or equal to 1"),
    ("max_points_per_query", "2.5", "must be a valid integer"),
    ("max_series_per_query", "many", "must be a valid integer"),
    ("ingest_rate_per_host", "-1", "must be greater than or equal to 0"),
    ("ingest_burst_per_host", "0", "must be greater than or equal to 1"),
    ("ingest_samples_per_host", "-1", "must be greater than or equal to 0"),
    ("ingest_samples_burst_per_host", "0", "must be greater than or equal to 1"),
    ("ingest_lines_per_host", "NaN", "must be a finite number"),
    ("ingest_lines_burst_per_host", "0", "must be greater than or equal to 1"),
    ("ingest_max_inflight", "-64", "must be greater than or equal to 0"),
    ("storage_retry_after", "0", "must be greater than or equal to 1"),
    ("login_window_seconds", "-300", "must be greater than 0"),
    ("login_failures_per_user", "0", "must be greater than or equal to 1"),
    ("batch_id_retention_days", "-4", "must be greater than 0"),
    ("log_retention_check_seconds", "0", "must be greater than 0"),
    ("max_body_bytes", "-1", "must be greater than or equal to 1024"),
    ("cookie_secure", "maybe", "must be a valid boolean"),
    ("public_url", "console.example.com", "must be an http:// or https:// URL"),
    ("listen", "127.0.0.1:99999", "must be HOST:PORT"),
]


@pytest.mark.parametrize("key, value, problem", REFUSED)
def test_a_refused_environment_value_names_key_and_variable(key, value, problem):
    variable = f"FLEETDECK_{key.upper()}"
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={variable: value})
    assert str(caught.value).startswith(f"console.{key}: {problem}"), caught.value
    assert str(caught.value).endswith(f", got {value!r} (from environment {variable})"), caught.value


@pytest.mark.parametrize("key, value", [
    ("retention_1h_days", -5), ("retention_1m_days", ".nan"), ("rollup_interval", ".inf"),
    ("max_series_per_host", -3), ("log_retention_days", "-.inf"), ("max_body_bytes", "true"),
    ("sample_max_future", "[600]"), ("session_days", "{days: 7}"), ("data_dir", '""'), ("data_dir", "7"),
])
def test_a_refused_file_value_names_key_file_and_line(tmp_path, key, value):
    path = tmp_path / "fleetdeck.yaml"
    path.write_text(f"# settings\nconsole:\n  listen: 127.0.0.1:8700\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"^console\.{key}: .* \(from {re.escape(str(path))} line 4\)$"):
        load_config(path, env={})


def test_a_key_without_a_value_takes_its_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  retention_1h_days:\n  listen: 127.0.0.1:9\n")
    assert load_config(path, env={}).console.retention_1h_days == 730.0


def test_a_refused_database_url_is_not_echoed():
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"FLEETDECK_DATABASE_URL": "mysql://fleetdeck:s3cret@db/fleetdeck"})
    assert str(caught.value).startswith("console.database_url: must be a SQLAlchemy URL of SQLite or PostgreSQL")
    assert str(caught.value).endswith("(from environment FLEETDECK_DATABASE_URL)")
    assert "s3cret" not in str(caught.value)


def test_a_read_replica_must_be_postgresql_and_needs_a_postgresql_primary():
    primary = "postgresql+psycopg://fleetdeck:pw@db/fleetdeck"
    with pytest.raises(ConfigError, match=r"^console\.database_read_url: must be a SQLAlchemy URL of a PostgreSQL "
                                          r"replica .*\(from environment FLEETDECK_DATABASE_READ_URL\)$"):
        load_config(None, env={"FLEETDECK_DATABASE_URL": primary, "FLEETDECK_DATABASE_READ_URL": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match=r"^console\.database_read_url: a read replica needs a PostgreSQL "
                                          r"database_url"):
        load_config(None, env={"FLEETDECK_DATABASE_READ_URL": primary})
    config = load_config(None, env={"FLEETDECK_DATABASE_URL": primary, "FLEETDECK_DATABASE_READ_URL": primary})
    assert config.console.database_read_url == primary


def test_a_short_shared_cookie_secret_refuses_to_start(tmp_path):
    from console.services import cookie_secret

    with pytest.raises(ConfigError, match=r"^FLEETDECK_COOKIE_SECRET: must be at least 32 characters"):
        cookie_secret(tmp_path, env={"FLEETDECK_COOKIE_SECRET": "short"})
    shared = "s" * 40
    assert cookie_secret(tmp_path, env={"FLEETDECK_COOKIE_SECRET": shared}) == shared
    assert not (tmp_path / "cookie_secret").exists()  # the variable wins: no file of its own
    assert cookie_secret(tmp_path, env={}) == (tmp_path / "cookie_secret").read_text().strip()



def _secret_after(barrier, data_dir, answers) -> None:
    from console.services import cookie_secret

    barrier.wait()
    try:
        answers.put(cookie_secret(data_dir, env={}))
    except Exception as exc:  # noqa: BLE001 - the failure is what the test reports
        answers.put(f"raised {exc!r}")


def test_workers_starting_together_share_one_whole_cookie_secret(tmp_path):
    """``serve --workers N`` starts its workers at once: each reads the secret one of them
    wrote, none fails on the file another made, none reads it half-written."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for round_ in range(10):
        data_dir = tmp_path / f"data{round_}"
        barrier, answers = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_secret_after, args=(barrier, data_dir, answers)) for _ in range(6)]
        for proc in procs:
            proc.start()
        got = [answers.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(30)
        written = (data_dir / "cookie_secret").read_text().strip()
        assert got == [written] * 6 and len(written) >= 32, got
        assert [p.name for p in data_dir.iterdir()] == ["cookie_secret"]  # no draft left behind
        assert (data_dir / "cookie_secret").stat().st_mode & 0o777 == 0o600

def test_a_refused_flag_names_the_flag():
    with pytest.raises(ConfigError, match=r"^console\.listen: .*got 'here' \(from command-line flag --listen\)$"):
        load_config(None, env={}, overrides={"listen": "here"})


def test_the_environment_wins_and_is_named_over_a_good_file_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  retention_1h_days: 365\n")
    with pytest.raises(ConfigError, match=r"\(from environment FLEETDECK_RETENTION_1H_DAYS\)$"):
        load_config(path, env={"FLEETDECK_RETENTION_1H_DAYS": "-5"})


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  retention_raw_days: -1\n  max_body_bytes: .nan\n  colour: blue\n")
    lines = str(pytest.raises(ConfigError, load_config, path, env={}).value).splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["console.colour", "console.max_body_bytes",
                                                             "console.retention_raw_days"]


def test_coarser_tiers_must_be_kept_at_least_as_long(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  retention_1m_days: 30\n")
    with pytest.raises(ConfigError, match=r"^console\.retention_1h_days: must be at least retention_1m_days \(30\), "
                                          r"got 20 \(from environment FLEETDECK_RETENTION_1H_DAYS; "
                                          r"retention_1m_days from .*c\.yaml line 2\)$"):
        load_config(path, env={"FLEETDECK_RETENTION_1H_DAYS": "20"})
    with pytest.raises(ConfigError, match=r"^console\.retention_1m_days: must be at least retention_raw_days \(60\), "
                                          r"got 30 \(from .*c\.yaml line 2; retention_raw_days from environment"):
        load_config(path, env={"FLEETDECK_RETENTION_RAW_DAYS": "60"})


# -- sections: each read by its owner -----------------------------------------------------
def test_the_old_alerts_section_is_refused_naming_its_replacement(tmp_path):
    path = tmp_path / "c.yaml"
    for text in ("alerts: []\n", "alerts:\n", "alerts:\n  - {name: disk full}\n"):
        path.write_text("console: {}\n" + text)
        with pytest.raises(ConfigError, match=r"alerts \(.*c\.yaml line 2\): replaced by the alerting: section"):
            load_config(path, env={})


def test_the_console_ignores_the_agent_section_and_keeps_apps_and_inventory(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("agent:\n  interval: -1\n  anything: 1\napps:\n  web: {target: {image: x}}\n"
                    "inventory:\n  hosts: {web-1: {address: 10.0.0.1}}\n")
    config = load_config(path, env={})
    assert config.apps == {"web": {"target": {"image": "x"}}}
    assert config.inventory == {"hosts": {"web-1": {"address": "10.0.0.1"}}}


def test_the_agent_reads_only_its_section_of_a_shared_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("console:\n  listen: 127.0.0.1:9\napps:\n  web: {target: {image: x}}\ninventory: {}\n")
    assert load_agent_config(str(path), {}, environ={}).interval == 10.0  # no agent: section, defaults
    path.write_text("console: {}\nagent:\n  interval: 4\nalerting: {rules: []}\n")
    assert load_agent_config(str(path), {}, environ={}).interval == 4.0
    path.write_text("console: {}\ninterval: 4\n")
    with pytest.raises(AgentConfigError, match=r"interval \(from .*c\.yaml line 2\): agent settings go under"):
        load_agent_config(str(path), {}, environ={})


def test_an_agent_key_without_a_value_takes_its_default(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("agent:\n  interval:\n  timeout: 3\n")
    config = load_agent_config(str(path), {}, environ={})
    assert (config.interval, config.timeout) == (10.0, 3.0)


def test_the_agent_knows_every_console_section():
    assert set(SECTIONS) - {"agent"} <= CONSOLE_SECTIONS


@pytest.mark.parametrize("text, overrides, env, message", [
    ("agent:\n  retry_max_backoff: .inf\n", {}, {}, r"retry_max_backoff \(from .*line 2\) must be a number of seconds"),
    ("agent:\n  spool_max_age: .nan\n", {}, {}, r"spool_max_age \(from .*line 2\) must be a number of seconds"),
    ("agent:\n  drain_rate: -5\n", {}, {}, r"drain_rate \(from .*line 2\) must be a number of batches"),
    ("agent:\n  spool_max_bytes: -1\n", {}, {}, r"spool_max_bytes \(from .*line 2\) must be a whole number of bytes"),
    ("agent:\n  timeout: true\n", {}, {}, r"timeout \(from .*line 2\) must be a number of seconds"),
    ("agent:\n  spool_fsync: 3\n", {}, {}, r"spool_fsync \(from .*line 2\) must be true or false"),
    ("agent:\n  collectors: [host, disco]\n", {}, {}, r"collectors \(from .*line 2\) names an unknown collector"),
    ("agent:\n  collector_options: {gpu: {}}\n", {}, {}, r"options for 'gpu', which is not in collectors"),
    ("agent:\n  retry_min_backoff: 60\n", {}, {},
     r"retry_min_backoff \(from .*line 2\) \(60\) must not exceed retry_max_backoff \(from the default\)"),
    ("agent:\n  nope: 1\n", {}, {}, r"unknown key 'nope' in agent settings \(from .*line 2\)"),
    ("", {}, {"FLEETDECK_AGENT_INTERVAL": "nan"}, r"interval \(from environment FLEETDECK_AGENT_INTERVAL\)"),
    ("", {}, {"FLEETDECK_AGENT_INTERVAL": "inf"}, r"interval \(from environment FLEETDECK_AGENT_INTERVAL\)"),
    ("", {"console_url": "ftp://x"}, {}, r"console_url \(from command-line flag --console\)"),
    ("", {}, {"FLEETDECK_AGENT_HOST": "web-1\n"}, r"host \(from environment FLEETDECK_AGENT_HOST\) must be a name"),
    ("agent:\n  labels: {\"rack\\n\": x}\n", {}, {}, r"labels \(from .*line 2\): invalid label name 'rack\\n'"),
])
def test_agent_refused_values_name_key_and_source(tmp_path, text, overrides, env, message):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(AgentConfigError, match=message):
        load_agent_config(str(path), overrides, environ=env)


# -- the real command ---------------------------------------------------------------------
def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", "serve", *args], cwd=tmp_path,
                          env=child_env(FLEETDECK_DATA_DIR=str(tmp_path / "data"), **env),
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_a_negative_retention_from_the_environment(tmp_path):
    result = serve(tmp_path, FLEETDECK_RETENTION_1H_DAYS="-5", FLEETDECK_LISTEN=f"127.0.0.1:{free_port()}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == ("fleetdeck: configuration: console.retention_1h_days: must be greater than 0, "
                                     "got '-5' (from environment FLEETDECK_RETENTION_1H_DAYS)")
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_serve_refuses_bad_file_values_and_sections_naming_file_and_line(tmp_path):
    path = tmp_path / "fleetdeck.yaml"
    path.write_text(f"console:\n  listen: 127.0.0.1:{free_port()}\n  rollup_interval: .nan\n  colour: blue\n")
    result = serve(tmp_path, "--config", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"console.rollup_interval: must be a finite number, got nan (from {path} line 3)" in result.stderr
    assert f"console.colour: unknown key (from {path} line 4)" in result.stderr
    path.write_text("console: {}\nrouting:\n  rules: []\n")
    result = serve(tmp_path, "--config", str(path))
    assert result.returncode == 2 and f"{path}: unknown top-level section 'routing' (line 2)" in result.stderr
    path.write_text("console: {}\nalerting:\n  rules: []\n")
    result = serve(tmp_path, "--config", str(path))
    assert result.returncode == 2 and f"alerting.rules: unknown key (from {path} line 3)" in result.stderr
    path.write_text("console: {}\nalerts: [{name: x}]\n")
    result = serve(tmp_path, "--config", str(path))
    assert result.returncode == 2 and "replaced by the alerting: section" in result.stderr


def test_serve_names_a_bad_listen_flag(tmp_path):
    result = serve(tmp_path, "--listen", "127.0.0.1:http")
    assert result.returncode == 2
    assert "console.listen: must be HOST:PORT ([ADDRESS]:PORT for IPv6), got '127.0.0.1:http' " \
           "(from command-line flag --listen)" in result.stderr


def test_serve_reports_a_bad_apps_section_as_configuration(tmp_path):
    path = tmp_path / "fleetdeck.yaml"
    path.write_text(f"console:\n  listen: 127.0.0.1:{free_port()}\napps:\n  web:\n    target: {{image: x, replicas: -1}}\n")
    result = serve(tmp_path, "--config", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == ("fleetdeck: configuration: apps.web.target.replicas: must be greater than or "
                                     f"equal to 0, got -1 (from {path} line 5)")
    assert "database" not in result.stderr


def test_run_with_a_shared_file_keeps_its_local_agent_up(tmp_path):
    """console:, apps: and inventory: and no agent: section: the local agent reads none of
    them, starts once and delivers; the console serves the apps."""
    port = free_port()
    path = tmp_path / "fleetdeck.yaml"
    path.write_text(f"""console:
  listen: 127.0.0.1:{port}
  data_dir: {tmp_path / 'data'}
apps:
  web:
    target: {{image: registry.example.com/team/web, engine: unix:///nonexistent/docker.sock}}
inventory:
  hosts:
    web-1: {{address: 10.0.0.11}}
""")
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "console.cli", "run", "--config", str(path)], cwd=tmp_path,
                                env=child_env(FLEETDECK_ADMIN_PASSWORD="correct-horse-battery"),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        samples = 0
        while time.monotonic() < deadline and not samples:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
            db = tmp_path / "data" / "fleetdeck.db"
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=30) as conn:
                        samples = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
                except sqlite3.OperationalError:  # created, not yet migrated
                    continue
        assert samples, f"the local agent delivered nothing:\n{log.read_text()}"
        time.sleep(3)  # a crashing agent would have exited by now
        output = log.read_text()
        assert output.count("Local agent for host") == 1, output
        assert "exited" not in output and "unknown key" not in output, output
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.parametrize("raw, problem", [("0", "must be greater than 0"), ("-5", "must be greater than 0"),
                                          ("86401", "must be less than or equal to 86400"),
                                          ("nan", "must be a finite number")])
def test_clock_skew_max_seconds_is_range_checked(raw, problem):
    with pytest.raises(ConfigError, match=rf"^console\.clock_skew_max_seconds: {problem}"):
        load_config(env={"FLEETDECK_CLOCK_SKEW_MAX_SECONDS": raw})
    assert load_config(env={"FLEETDECK_CLOCK_SKEW_MAX_SECONDS": "120"}).console.clock_skew_max_seconds == 120.0
