"""The agent: batch building, config precedence, and the ingest client over real HTTP."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import agents
from agents.agent import Agent
from agents.cli import main
from agents.client import IngestClient, PushError, parse_retry_after
from agents.config import AgentConfig, ConfigError, config_hash, load_agent_config
from agents.spool import Spool
from collectors.base import Collector, Sample
from collectors.host import HostCollector

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
AGENT_ENV = ("FLEETDECK_CONFIG", "FLEETDECK_AGENT_CONSOLE", "FLEETDECK_AGENT_TOKEN", "FLEETDECK_AGENT_HOST",
             "FLEETDECK_AGENT_INTERVAL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in PROXY_VARS + AGENT_ENV:
        monkeypatch.delenv(name, raising=False)


# -- a real HTTP server standing in for the console -----------------------------


class FakeConsole:
    """A stdlib HTTP server on 127.0.0.1:<free port> that records requests and
    answers from a queue of (status, body, headers); the last answer repeats."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[tuple[int, bytes, dict]] = [(200, b'{"accepted_samples": 1, "accepted_logs": 0, '
                                                             b'"duplicate": false}', {})]
        self.delay = 0.0
        self.received = threading.Event()
        console = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                console.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw})
                status, body, headers = console.answers.pop(0) if len(console.answers) > 1 else console.answers[0]
                time.sleep(console.delay)
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                console.received.set()

            def log_message(self, *args) -> None:
                pass  # keep test output clean; requests are recorded above

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),  # shutdown() waits one poll
                                       daemon=True)
        self.thread.start()

    def answer(self, status: int, body: object, headers: dict | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers = [(status, raw, dict(headers or {}))]

    def batches(self) -> list[dict]:
        return [json.loads(gzip.decompress(r["raw"])) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_console():
    server = FakeConsole()
    yield server
    server.close()


def free_port_without_listener() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- collectors used by the agent tests ------------------------------------------


class StaticCollector(Collector):
    name = "static"

    def collect(self):
        yield Sample("app_requests_total", {"code": "200"}, 42.0, "counter")
        yield Sample("app_temperature_celsius", {}, 21.5, "gauge")


class FailingCollector(Collector):
    name = "failing"

    def collect(self):
        raise RuntimeError("sensor unplugged")


class SloppyCollector(Collector):
    name = "sloppy"

    def collect(self):
        yield Sample("ok_value", {}, 1.0, "gauge")
        yield Sample("nan_value", {}, float("nan"), "gauge")
        yield Sample("bad-name", {}, 1.0, "gauge")
        yield Sample("bad_label", {"0x": "y"}, 1.0, "gauge")
        yield Sample("ok_value", {}, 2.0, "gauge")  # same series twice


def config(**changes) -> AgentConfig:
    return AgentConfig(**{"host": "web-1", "interval": 10.0, "labels": {"env": "test"}, **changes})


class Recorder:
    def __init__(self) -> None:
        self.batches: list[dict] = []

    def push(self, batch: dict) -> dict:
        self.batches.append(batch)
        return {"accepted_samples": len(batch["metrics"]), "accepted_logs": 0, "duplicate": False}


def metric(batch: dict, name: str, **labels) -> dict:
    found = [m for m in batch["metrics"]
             if m["name"] == name and all(m["labels"].get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, len(found))
    return found[0]


# -- batches ------------------------------------------------------------------------


def test_failing_collector_is_skipped_and_logged_while_others_report(caplog):
    agent = Agent(config(), [FailingCollector(), StaticCollector()], Recorder(), clock=lambda: 1763700000.123)
    with caplog.at_level(logging.ERROR, logger="agents.agent"):
        batch = agent.collect_batch()
    assert any("'failing'" in r.getMessage() and r.exc_info for r in caplog.records)
    assert metric(batch, "app_requests_total", code="200")["points"] == [[1763700000123, 42.0]]
    assert metric(batch, "fleetdeck_agent_collector_success", collector="failing")["points"][0][1] == 0.0
    assert metric(batch, "fleetdeck_agent_collector_success", collector="static")["points"][0][1] == 1.0
    assert metric(batch, "fleetdeck_agent_collector_errors_total", collector="failing")["points"][0][1] == 1.0
    batch = agent.collect_batch()
    assert metric(batch, "fleetdeck_agent_collector_errors_total", collector="failing")["points"][0][1] == 2.0


def test_batch_matches_the_ingest_contract():
    now = 1763700000.5
    agent = Agent(config(interval=15), [StaticCollector(), HostCollector()], Recorder(), clock=lambda: now)
    batch = agent.collect_batch()
    assert set(batch) == {"host", "batch_id", "sent_at", "agent", "labels", "metrics", "logs"}
    assert batch["host"] == "web-1"
    assert uuid.UUID(batch["batch_id"]).version == 4
    assert batch["sent_at"] == now and isinstance(batch["sent_at"], float)
    assert batch["agent"] == {"version": agents.__version__, "interval": 15.0,
                              "config_hash": config_hash(agent.config)}
    assert batch["labels"] == {"env": "test"}
    assert batch["logs"] == []
    assert len(batch["metrics"]) > 300
    for m in batch["metrics"]:
        assert set(m) == {"name", "type", "labels", "points"}
        assert m["type"] in ("gauge", "counter")
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in m["labels"].items())
        [[ts, value]] = m["points"]
        assert ts == 1763700000500 and isinstance(ts, int) and isinstance(value, float)
    assert not any(m["labels"].get("env") for m in batch["metrics"])  # host labels stay top-level
    json.dumps(batch, allow_nan=False)
    assert agent.collect_batch()["batch_id"] != batch["batch_id"]


def test_samples_the_console_would_reject_are_dropped_and_counted():
    batch = Agent(config(), [SloppyCollector()], Recorder()).collect_batch()
    names = [m["name"] for m in batch["metrics"] if not m["name"].startswith("fleetdeck_agent_")]
    assert names == ["ok_value"]
    assert metric(batch, "ok_value")["points"][0][1] == 1.0
    assert metric(batch, "fleetdeck_agent_dropped_samples_total", collector="sloppy",
                  reason="invalid")["points"][0][1] == 4.0


class ChurnCollector(Collector):
    """A container host: the load average, then one new interface's series per cycle."""

    name = "host"

    def __init__(self) -> None:
        self.cycle = 0

    def collect(self):
        self.cycle += 1
        yield Sample("node_load1", {}, 0.5, "gauge")
        for i in range(self.cycle):
            yield Sample("node_network_receive_bytes_total", {"device": f"veth{i}"}, 1.0, "counter")


def test_metric_relabel_configs_drop_and_keep_per_input_and_count_what_they_drop(tmp_path):
    path = write_yaml(tmp_path, """agent:
  collectors: [host]
  metric_relabel_configs:
    host:
      - {source_labels: [__name__, device], regex: 'node_network_.*;veth[02]', action: drop}
""")
    collector = ChurnCollector()
    collector.cycle = 3  # veth0..veth3
    agent = Agent(load_agent_config(path, {}, environ={}), [collector], Recorder())
    batch = agent.collect_batch()
    devices = {m["labels"]["device"] for m in batch["metrics"] if m["name"] == "node_network_receive_bytes_total"}
    assert devices == {"veth1", "veth3"}
    metric(batch, "node_load1")
    assert metric(batch, "fleetdeck_agent_dropped_samples_total", collector="host",
                  reason="relabel")["points"][0][1] == 2.0


@pytest.mark.parametrize("text, message", [
    ("agent:\n  metric_relabel_configs: {textfile: []}\n", "options for 'textfile', which is not in collectors"),
    ("agent:\n  metric_relabel_configs: {host: [{source_labels: [__name__], regex: '(', action: drop}]}\n",
     r"metric_relabel_configs.host\[0\].regex \(from .*line 2\) is not a valid RE2 regex"),
    ("agent:\n  metric_relabel_configs: {host: [{source_labels: [__name__], action: replace}]}\n",
     "action .* must be one of keep, drop, got 'replace'"),
    ("agent:\n  series_limit: -1\n", "series_limit .* must be a whole number from 0"),
    ("agent:\n  collector_options:\n    host: {netdev_device_exlude: '^lo$'}\n",
     r"collector_options.host.netdev_device_exlude \(from .*line 2\) is not an option of the host input; "
     "its options: proc_root, .*netdev_device_exclude"),
    ("agent:\n  collector_options:\n    host: {netdev_device_exclude: 5}\n",
     r"collector_options.host.netdev_device_exclude \(from .*line 2\) must be a regular expression.*got 5"),
    ("agent:\n  collector_options:\n    host: {fs_types_exclude: '('}\n",
     r"collector_options.host.fs_types_exclude \(from .*line 2\) is not a valid regular expression"),
    ("agent:\n  collector_options:\n    host: {mount_timeout: .inf}\n",
     r"collector_options.host.mount_timeout \(from .*line 2\) must be a number of seconds above 0, at most 3600"),
    ("agent:\n  collector_options:\n    host: {mount_timeout: 'abc'}\n", r"mount_timeout .*got 'abc'"),
    ("agent:\n  collector_options:\n    host: {mount_timeout: true}\n", r"mount_timeout .*got True"),
])
def test_cardinality_settings_are_validated(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_agent_config(write_yaml(tmp_path, text), {}, environ={})



def test_a_host_option_with_no_value_takes_its_default(tmp_path):
    path = write_yaml(tmp_path, "agent:\n  collector_options:\n    host:\n      fs_types_exclude:\n"
                                "      netdev_device_exclude: ''\n")
    assert load_agent_config(path, {}, environ={}).collector_options == {"host": {"netdev_device_exclude": ""}}

def test_series_limit_keeps_established_series_and_drops_new_ones_counted():
    collector = ChurnCollector()
    agent = Agent(config(series_limit=3), [collector], Recorder())
    sent = []
    for _ in range(5):
        batch = agent.collect_batch()
        sent.append({m["labels"].get("device", m["name"]) for m in batch["metrics"]
                     if not m["name"].startswith("fleetdeck_agent_")})
    # Cycle 1: load + veth0; 2: + veth1; from then on the budget (3) is full and the new
    # interfaces wait while node_load1 keeps its place.
    assert sent == [{"node_load1", "veth0"}] + [{"node_load1", "veth0", "veth1"}] * 4
    assert metric(batch, "fleetdeck_agent_series")["points"][0][1] == 3.0
    assert metric(batch, "fleetdeck_agent_series_limit")["points"][0][1] == 3.0
    # Cycles 3, 4, 5 each had 1, 2, 3 series over the budget.
    assert metric(batch, "fleetdeck_agent_dropped_samples_total", collector="host",
                  reason="series_limit")["points"][0][1] == 6.0



class LogCountersCollector(Collector):
    """The logs input's own counters, as the tailer reports them, and a series of a scraped
    target that merely shares the prefix (from another input: budgeted like any other)."""

    name = "logs"

    def collect(self):
        yield Sample("fleetdeck_agent_log_lines_total", {}, 7.0, "counter")
        yield Sample("fleetdeck_agent_log_bytes_total", {}, 700.0, "counter")


class ForeignPrefixCollector(Collector):
    name = "textfile"

    def collect(self):
        yield Sample("fleetdeck_agent_lookalike", {}, 1.0, "gauge")


def test_the_agents_own_series_from_its_inputs_are_outside_the_series_budget():
    churn = ChurnCollector()
    churn.cycle = 4  # five series of the host input: more than the budget at once
    agent = Agent(config(series_limit=2), [churn, LogCountersCollector(), ForeignPrefixCollector()], Recorder())
    for _ in range(3):
        batch = agent.collect_batch()
        assert metric(batch, "fleetdeck_agent_log_lines_total")["points"][0][1] == 7.0
        assert metric(batch, "fleetdeck_agent_log_bytes_total")["points"][0][1] == 700.0
        budgeted = [m for m in batch["metrics"] if m["name"] in ("node_load1", "node_network_receive_bytes_total",
                                                                 "fleetdeck_agent_lookalike")]
        assert len(budgeted) == 2
    assert not [m for m in batch["metrics"] if m["name"] == "fleetdeck_agent_lookalike"]
    assert metric(batch, "fleetdeck_agent_dropped_samples_total", collector="logs",
                  reason="series_limit")["points"][0][1] == 0.0
    assert metric(batch, "fleetdeck_agent_dropped_samples_total", collector="textfile",
                  reason="series_limit")["points"][0][1] == 3.0


def test_run_forever_retries_failed_pushes_from_the_spool(fake_console, tmp_path):
    fake_console.answers = [(503, b'{"error": {"code": "storage_unavailable", "message": "db down"}}', {})] * 2 + [
        (200, b'{"accepted_samples": 3, "accepted_logs": 0, "duplicate": false}', {})]
    cfg = config(interval=0.05, retry_min_backoff=0.01, retry_max_backoff=0.05, drain_rate=1000.0,
                 state_dir=str(tmp_path))
    agent = Agent(cfg, [StaticCollector()], IngestClient(fake_console.url, "tok", 5),
                  spool=Spool(str(tmp_path / "spool"), fsync=False))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while len(fake_console.requests) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    batches = fake_console.batches()
    assert len(batches) >= 6
    # The first batch was refused twice with 503 and sent again, the same bytes each time.
    assert batches[0]["batch_id"] == batches[1]["batch_id"] == batches[2]["batch_id"]
    assert fake_console.requests[0]["raw"] == fake_console.requests[2]["raw"]
    assert len({b["batch_id"] for b in batches[2:]}) == len(batches) - 2
    later = [b for b in batches[3:] if any(m["name"] == "fleetdeck_agent_send_errors_total" for m in b["metrics"])]
    assert later, "no batch reported the send errors"
    assert metric(later[-1], "fleetdeck_agent_send_errors_total", code="503")["points"][0][1] == 2.0
    assert metric(later[-1], "fleetdeck_agent_batches_dropped_total", reason="spool_full")["points"][0][1] == 0.0


# -- configuration ------------------------------------------------------------------


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_config_precedence_file_env_cli(tmp_path):
    path = write_yaml(tmp_path, """
console:
  listen: 127.0.0.1:8700
agent:
  console_url: http://file.example:8700/
  token: file-token
  host: from-file
  interval: 30
  labels: {env: prod, rack: 7}
apps: {}
""")
    from_file = load_agent_config(path, {}, environ={})
    assert (from_file.console_url, from_file.token, from_file.host, from_file.interval) == (
        "http://file.example:8700", "file-token", "from-file", 30.0)
    assert from_file.labels == {"env": "prod", "rack": "7"}

    env = {"FLEETDECK_AGENT_CONSOLE": "https://env.example", "FLEETDECK_AGENT_INTERVAL": "5",
           "FLEETDECK_AGENT_TOKEN": "env-token", "FLEETDECK_AGENT_HOST": ""}
    from_env = load_agent_config(path, {}, environ=env)
    assert (from_env.console_url, from_env.token, from_env.host, from_env.interval) == (
        "https://env.example", "env-token", "from-file", 5.0)

    cli = load_agent_config(path, {"console_url": "http://cli.example", "interval": 2.5, "host": None}, environ=env)
    assert (cli.console_url, cli.token, cli.host, cli.interval) == ("http://cli.example", "env-token", "from-file", 2.5)


def test_config_defaults_and_plain_mapping_file(tmp_path):
    defaults = load_agent_config(None, {}, environ={})
    assert defaults.console_url == "http://127.0.0.1:8700" and defaults.interval == 10.0
    assert defaults.collectors == ["host"] and defaults.host == socket.gethostname()
    plain = load_agent_config(write_yaml(tmp_path, "token: t\nhost: ''\n"), {}, environ={})
    assert plain.token == "t" and plain.host == socket.gethostname()
    shipped = load_agent_config(str(REPO_ROOT / "config.yaml"), {}, environ={})
    assert shipped.collectors == ["host"]


@pytest.mark.parametrize("text, overrides, env, message", [
    ("agent:\n  intervall: 5\n", {}, {}, "unknown key 'intervall'"),
    ("agent:\n  interval: 0\n", {}, {}, r"interval \(from .*config.yaml line 2\) must be a number of seconds in \(0"),
    ("", {"interval": -1.0}, {}, r"interval \(from command-line flag --interval\) must be a number of seconds"),
    ("", {}, {"FLEETDECK_AGENT_INTERVAL": "soon"},
     r"interval \(from environment FLEETDECK_AGENT_INTERVAL\) must be a number"),
    ("", {"console_url": "ftp://x"}, {}, "must be an http:// or https:// URL"),
    ("", {"console_url": "127.0.0.1:8700"}, {}, "must be an http:// or https:// URL"),
    ("agent:\n  labels: {bad-name: x}\n", {}, {}, "invalid label name 'bad-name'"),
    ("agent:\n  host: 'web 1'\n", {}, {}, "host .* must be a name"),
    ("agent: [1, 2]\n", {}, {}, "'agent' must be a mapping"),
    ("agent:\n  interval: [\n", {}, {}, "invalid YAML"),
])
def test_config_errors_name_the_problem(tmp_path, text, overrides, env, message):
    with pytest.raises(ConfigError, match=message):
        load_agent_config(write_yaml(tmp_path, text), overrides, environ=env)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_agent_config(str(tmp_path / "absent.yaml"), {}, environ={})


# -- the ingest client over real HTTP ----------------------------------------------------


def test_client_posts_gzip_json_with_bearer_token(fake_console):
    batch = {"host": "web-1", "batch_id": str(uuid.uuid4()), "sent_at": 1.5, "metrics": [], "logs": []}
    answer = IngestClient(fake_console.url + "/", "s3cret", 5).push(batch)
    assert answer == {"accepted_samples": 1, "accepted_logs": 0, "duplicate": False}
    [request] = fake_console.requests
    assert request["path"] == "/api/v1/ingest"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["headers"]["Content-Encoding"] == "gzip"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == f"fleetdeck-agent/{agents.__version__}"
    assert json.loads(gzip.decompress(request["raw"])) == batch


def test_client_parses_json_errors(fake_console):
    fake_console.answer(401, {"error": {"code": "invalid_token", "message": "unknown agent token", "details": {}}})
    with pytest.raises(PushError) as err:
        IngestClient(fake_console.url, "bad", 5).push({"host": "h"})
    assert (err.value.status, err.value.code, err.value.message, err.value.retry_after) == (
        401, "invalid_token", "unknown agent token", None)

    fake_console.answer(429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "7"})
    with pytest.raises(PushError) as err:
        IngestClient(fake_console.url, "t", 5).push({"host": "h"})
    assert (err.value.status, err.value.code, err.value.retry_after) == (429, "rate_limited", 7.0)

    fake_console.answer(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    with pytest.raises(PushError) as err:
        IngestClient(fake_console.url, "t", 5).push({"host": "h"})
    assert (err.value.status, err.value.code) == (502, "http_502")
    assert "Bad Gateway" in err.value.message

    fake_console.answer(200, b"not json")
    with pytest.raises(PushError) as err:
        IngestClient(fake_console.url, "t", 5).push({"host": "h"})
    assert (err.value.status, err.value.code) == (200, "invalid_response")


def test_client_reports_refused_connections_and_timeouts(fake_console):
    with pytest.raises(PushError) as err:
        IngestClient(f"http://127.0.0.1:{free_port_without_listener()}", "t", 5).push({"host": "h"})
    assert (err.value.status, err.value.code) == (None, "connection_failed")
    assert "refused" in err.value.message.lower()

    fake_console.delay = 1.0
    with pytest.raises(PushError) as err:
        IngestClient(fake_console.url, "t", 0.2).push({"host": "h"})
    assert (err.value.status, err.value.code) == (None, "timeout")


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- command line -------------------------------------------------------------------


def test_cli_once_prints_the_console_answer(fake_console, capsys):
    code = main(["--once", "--console", fake_console.url, "--token", "t", "--host", "cli-host"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out) == {"accepted_samples": 1, "accepted_logs": 0, "duplicate": False}
    [batch] = fake_console.batches()
    assert batch["host"] == "cli-host" and len(batch["metrics"]) > 300


def test_cli_once_reports_a_rejection_in_one_line(fake_console, capsys):
    fake_console.answer(401, {"error": {"code": "invalid_token", "message": "unknown agent token"}})
    code = main(["--once", "--console", fake_console.url, "--token", "wrong"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == "fleetdeck-agent: console rejected the batch: 401 invalid_token: unknown agent token"


def test_cli_config_error_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("FLEETDECK_AGENT_INTERVAL", "-3")
    assert main(["--once"]) == 2
    assert capsys.readouterr().err.startswith(
        "fleetdeck-agent: config error: interval (from environment FLEETDECK_AGENT_INTERVAL)")


def agent_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS + AGENT_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_python_m_agents_once(fake_console):
    result = subprocess.run([sys.executable, "-m", "agents", "--once", "--console", fake_console.url],
                            env={**agent_env(), "FLEETDECK_AGENT_TOKEN": "env-token"}, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["duplicate"] is False
    assert fake_console.requests[0]["headers"]["Authorization"] == "Bearer env-token"


def test_agent_stops_cleanly_on_sigterm(fake_console):
    proc = subprocess.Popen([sys.executable, "-m", "agents", "--console", fake_console.url, "--token", "t",
                             "--interval", "0.2", "--log-level", "info"],
                            env=agent_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fake_console.received.wait(30), "no batch arrived"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "received SIGTERM" in stderr and "agent stopped" in stderr


def test_client_keeps_one_connection_alive_and_reconnects_when_it_was_closed():
    """Consecutive pushes share one HTTP/1.1 connection; a connection the server closed
    while idle (without saying so) is replaced and the batch still arrives."""
    ports: list[int] = []
    close_after = {1}  # close silently after the first request

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            self.rfile.read(int(self.headers["Content-Length"]))
            ports.append(self.client_address[1])
            body = b'{"accepted_samples": 0, "accepted_logs": 0, "duplicate": false}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if len(ports) in close_after:
                self.close_connection = True

        def log_message(self, *args) -> None:
            pass  # requests are recorded in ports

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        client = IngestClient(f"http://127.0.0.1:{server.server_address[1]}", "t", 5)
        client.push({"host": "h"})
        time.sleep(0.1)  # the server has closed its end by now
        for _ in range(3):
            assert client.push({"host": "h"}) == {"accepted_samples": 0, "accepted_logs": 0, "duplicate": False}
        assert len(ports) == 4
        assert ports[0] != ports[1]  # a new connection after the silent close
        assert ports[1] == ports[2] == ports[3]  # then kept alive
    finally:
        server.shutdown()
        server.server_close()


def test_client_sends_through_an_http_proxy_from_the_environment(fake_console, monkeypatch):
    monkeypatch.setenv("http_proxy", fake_console.url)  # the fake console plays the proxy
    client = IngestClient("http://console.invalid:8700", "s3cret", 5)
    assert client.push({"host": "h"}) == {"accepted_samples": 1, "accepted_logs": 0, "duplicate": False}
    [request] = fake_console.requests
    assert request["path"] == "http://console.invalid:8700/api/v1/ingest"  # absolute-form, as to a proxy
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert json.loads(gzip.decompress(request["raw"])) == {"host": "h"}
    fake_console.answer(429, {"error": {"code": "rate_limited", "message": "slow down"}}, {"Retry-After": "3"})
    with pytest.raises(PushError) as err:
        client.push({"host": "h"})
    assert (err.value.status, err.value.code, err.value.retry_after) == (429, "rate_limited", 3.0)


def test_client_refuses_a_token_with_a_line_break(fake_console):
    with pytest.raises(ValueError):
        IngestClient(fake_console.url, "t\r\nX-Injected: 1", 5).push({"host": "h"})
    assert fake_console.requests == []


class CountingCollector(Collector):
    """One sample per cycle whose value is the cycle's number, padded with filler series
    so a batch is a few KiB (a full disk is reached in a few cycles)."""

    name = "count"

    def __init__(self) -> None:
        self.n = 0

    def collect(self):
        self.n += 1
        yield Sample("test_cycle", {}, float(self.n), "gauge")
        for i in range(40):
            yield Sample("test_filler", {"i": str(i), "noise": uuid.uuid4().hex}, float(i), "gauge")


def spooled_cycles(spool: Spool) -> list[int]:
    out = []
    while (record := spool.peek(timeout=0)) is not None:
        batch = json.loads(gzip.decompress(record.payload))
        out += [int(m["points"][0][1]) for m in batch["metrics"] if m["name"] == "test_cycle"]
        spool.ack(record.seq)
    return out


def test_a_full_disk_holds_the_newest_samples_and_drops_the_oldest_counted_once(tmp_path):
    """The real spool on a real 64 KiB tmpfs: while it refuses writes, the samples of the
    newest ``spool_full_hold_batches`` batches wait in memory; older ones are dropped and
    counted once; once space is back the held ones are spooled in order."""
    from tests.integration.procs import tmpfs

    with tmpfs(tmp_path / "fs", "64k") as fs:
        config = load_agent_config(None, {"host": "full-0", "state_dir": str(tmp_path / "state"),
                                          "spool_full_hold_batches": 5}, environ={})
        spool = Spool(str(fs / "spool"), max_bytes=1 << 20, fsync=False)
        counter = CountingCollector()
        agent = Agent(config, [counter], IngestClient("http://127.0.0.1:9", "t"), spool=spool)
        while spool.snapshot().write_errors == 0:
            agent._cycle()
        first_refused = counter.n
        for _ in range(12):
            agent._cycle()
        last_refused = counter.n
        sent = spooled_cycles(spool)  # the console takes the backlog: space comes back
        agent._cycle()
        sent += spooled_cycles(spool)
        spool.close()
    refused = list(range(first_refused, last_refused + 1))
    dropped = refused[:-5]
    assert sent == list(range(1, first_refused)) + refused[-5:] + [last_refused + 1]
    assert agent._dropped_batches == len(dropped) == 8
    names = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in agent._self_samples([])}
    assert names[("fleetdeck_agent_batches_dropped_total", (("reason", "write_error"),))] == 8
    assert names[("fleetdeck_agent_dropped_log_lines_total", (("reason", "write_error"),))] == 0


def test_systemd_unit_restarts_an_agent_that_exits_with_a_failure():
    unit = (Path(__file__).resolve().parents[2] / "ansible/roles/fleetdeck_agent/templates/"
            "fleetdeck-agent.service.j2").read_text()
    assert "\nRestart=on-failure\n" in unit


def test_fleetdeck_agent_exits_1_when_its_sender_thread_dies(tmp_path, monkeypatch, capsys):
    """An unexpected error in the sender thread (here: injected into the push) ends
    ``fleetdeck-agent`` with status 1 instead of leaving a process that sends nothing."""
    def broken_push(self, body):
        raise RuntimeError("injected")

    monkeypatch.setattr(IngestClient, "push_body", broken_push)
    config = tmp_path / "agent.yaml"
    config.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "interval": 0.1, "token": "t",
                                  "console_url": "http://127.0.0.1:9", "host": "die-1"}))
    started = time.monotonic()
    assert main(["--config", str(config)]) == 1
    assert time.monotonic() - started < 30
    assert "the sender thread died" in capsys.readouterr().err
