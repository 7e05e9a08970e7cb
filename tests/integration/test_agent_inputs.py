"""The agent's `prometheus` scrape input against a real console's /metrics and a real
node_exporter, its `textfile` input against files written atomically and half-written
(beside a real node_exporter reading the same directory), and a real agent process
delivering both through its spool to a real console."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
import yaml
from sqlalchemy import text

from collectors.prometheus import PrometheusCollector, PrometheusOptions
from collectors.textfile import TextfileCollector, TextfileOptions
from tests.harness import wait_for
from tests.integration.exporters import start_node_exporter, stop_process
from tests.integration.procs import REPO, child_env, free_port

HEALTH = ("up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling")
BACKUP = '# TYPE backup_last_success_seconds gauge\nbackup_last_success_seconds{job="backup",instance="db-1"} 1.7e+09\n'


def scrape(targets: list[dict], agent_interval: float = 10.0):
    collector = PrometheusCollector(PrometheusOptions.from_mapping({"targets": targets}), agent_interval)
    return list(collector.collect())


def sample_lines(url: str) -> list[str]:
    """The page's sample lines, read without the parser under test."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        return [line for line in resp.read().decode().splitlines() if line.strip() and not line.startswith("#")]


def health(samples, job: str) -> dict[str, float]:
    return {s.name: s.value for s in samples if s.name in HEALTH and s.labels["job"] == job}


@pytest.fixture(scope="module")
def node_exporter(tmp_path_factory):
    work = tmp_path_factory.mktemp("node-exporter")
    textfiles = work / "textfile"
    textfiles.mkdir()
    (textfiles / "backup.prom").write_text(BACKUP)
    address, proc = start_node_exporter(work, textfiles)
    yield address
    stop_process(proc)


def test_scrape_of_the_console_metrics_page(console):
    url = console.url + "/metrics"
    for _ in range(2):  # the page's own route series exist from here on
        sample_lines(url)
    lines = sample_lines(url)
    samples = scrape([{"job_name": "fleetdeck", "url": url}])
    instance = f"127.0.0.1:{console.port}"
    assert all(s.labels["job"] == "fleetdeck" and s.labels["instance"] == instance for s in samples)
    got = health(samples, "fleetdeck")
    assert got["up"] == 1.0 and 0 < got["scrape_duration_seconds"] < 10
    assert got["scrape_samples_scraped"] == got["scrape_samples_post_metric_relabeling"] == len(lines)
    assert len(samples) == len(lines) + len(HEALTH)
    types = {s.name: s.type for s in samples}
    assert types["fleetdeck_http_request_duration_seconds_bucket"] == "counter"
    assert types["fleetdeck_http_request_duration_seconds_count"] == "counter"
    assert types["fleetdeck_ingest_samples_total"] == "counter"
    assert types["fleetdeck_live_subscriptions"] == "gauge"
    buckets = [s for s in samples if s.name == "fleetdeck_http_request_duration_seconds_bucket"]
    assert any(s.labels["le"] == "+Inf" and s.labels["route"] == "/metrics" for s in buckets)


def test_metric_relabel_configs_keep_and_drop_with_anchored_regexes(console):
    url = console.url + "/metrics"
    console.request("GET", "/healthz")  # request series of a second route
    rules = [{"source_labels": ["__name__"], "regex": "fleetdeck_(ingest|http)_.*", "action": "keep"},
             {"source_labels": ["__name__", "route"], "separator": "@", "regex": ".*_bucket@/metrics",
              "action": "drop"},
             {"source_labels": ["__name__"], "regex": "fleetdeck_ingest", "action": "drop"}]  # anchored: no match
    samples = scrape([{"job_name": "filtered", "url": url, "metric_relabel_configs": rules}])
    kept = [s for s in samples if s.name not in HEALTH]
    names = {s.name for s in kept}
    assert {"fleetdeck_ingest_samples_total", "fleetdeck_http_request_duration_seconds_count"} <= names
    assert all(n.startswith(("fleetdeck_ingest_", "fleetdeck_http_")) for n in names)
    assert "fleetdeck_live_subscriptions" in {line.split()[0] for line in sample_lines(url)}
    assert not [s for s in kept if s.name.endswith("_bucket") and s.labels.get("route") == "/metrics"]
    assert [s for s in kept if s.name.endswith("_bucket") and s.labels.get("route") != "/metrics"]
    got = health(samples, "filtered")
    assert got["scrape_samples_post_metric_relabeling"] == len(kept) < got["scrape_samples_scraped"]


@pytest.mark.parametrize("honor", [False, True])
def test_node_exporter_scrape_and_honor_labels(node_exporter, honor):
    url = f"http://{node_exporter}/metrics"
    samples = scrape([{"job_name": "node", "url": url, "honor_labels": honor, "labels": {"dc": "eu"}}])
    node = [s for s in samples if s.name.startswith("node_")]
    assert len(node) > 100
    assert all(s.labels["job"] == "node" and s.labels["instance"] == node_exporter and s.labels["dc"] == "eu"
               for s in node)
    (backup,) = [s for s in samples if s.name == "backup_last_success_seconds"]
    assert backup.value == 1.7e9
    if honor:
        assert backup.labels == {"job": "backup", "instance": "db-1", "dc": "eu"}
    else:
        assert backup.labels == {"job": "node", "instance": node_exporter, "dc": "eu",
                                 "exported_job": "backup", "exported_instance": "db-1"}
    assert health(samples, "node")["up"] == 1.0


def test_unreachable_target_is_up_0_and_the_others_still_report(console):
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    samples = scrape([{"job_name": "dead", "url": dead, "timeout": 2},
                      {"job_name": "fleetdeck", "url": console.url + "/metrics"}])
    dead_health = health(samples, "dead")
    assert 0 < dead_health.pop("scrape_duration_seconds") < 3
    assert dead_health == {"up": 0.0, "scrape_samples_scraped": 0.0, "scrape_samples_post_metric_relabeling": 0.0}
    assert [s.name for s in samples if s.labels.get("job") == "dead"] == list(HEALTH)
    assert health(samples, "fleetdeck")["up"] == 1.0


def test_targets_are_scraped_on_their_own_cadence(console):
    collector = PrometheusCollector(PrometheusOptions.from_mapping({"targets": [
        {"job_name": "every", "url": console.url + "/metrics"},
        {"job_name": "third", "url": console.url + "/metrics", "interval": 3}]}), 1.0)
    jobs = [sorted({s.labels["job"] for s in collector.collect()}) for _ in range(4)]
    assert jobs == [["every", "third"], ["every"], ["every"], ["every", "third"]]


def write_atomically(path, content: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


def textfile_view(samples) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_textfile_reads_what_node_exporter_reads_and_skips_a_broken_file(tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir()
    write_atomically(directory / "backup.prom", BACKUP + "# TYPE jobs_total counter\njobs_total{kind=\"a\"} 3\n")
    (directory / "broken.prom").write_text('bad_metric{x="1} 3\n')
    (directory / "pending.prom.tmp").write_text("not_a_prom_file 1\n")
    ours = list(TextfileCollector(TextfileOptions(str(directory))).collect())
    address, proc = start_node_exporter(tmp_path, directory, only_textfile=True)
    try:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
            page = resp.read().decode()
    finally:
        stop_process(proc)
    theirs = [s for f in text_string_to_metric_families(page) for s in f.samples
              if not s.name.startswith(("node_scrape_", "go_", "process_", "promhttp_", "node_exporter_"))]
    mtime = (directory / "backup.prom").stat().st_mtime
    want = {("backup_last_success_seconds", (("instance", "db-1"), ("job", "backup"))): 1.7e9,
            ("jobs_total", (("kind", "a"),)): 3.0,
            ("node_textfile_mtime_seconds", (("file", str(directory / "backup.prom")),)): pytest.approx(mtime),
            ("node_textfile_scrape_error", ()): 1.0}
    assert textfile_view(theirs) == want  # node_exporter's reading of the directory
    assert textfile_view(ours) == want
    assert {s.name: s.type for s in ours}["jobs_total"] == "counter"


def test_textfile_half_written_file_gives_nothing_until_complete(tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir()
    collector = TextfileCollector(TextfileOptions(str(directory)))
    full = "".join(f'queue_depth{{queue="q{i}"}} {i * 111}\n' for i in range(50))
    path = directory / "queues.prom"
    path.write_text(full[: len(full) // 2 + 3])  # a writer that is not done (cut mid-line)
    view = textfile_view(collector.collect())
    assert view == {("node_textfile_scrape_error", ()): 1.0}
    path.write_text("queue_depth 1\n# TYPE broken gauge\nbroken{\n")  # valid first line, garbage after
    assert textfile_view(collector.collect()) == {("node_textfile_scrape_error", ()): 1.0}
    path.write_text("stamped 1 1700000000000\n")  # client-side timestamps are refused, as by node_exporter
    assert textfile_view(collector.collect()) == {("node_textfile_scrape_error", ()): 1.0}
    write_atomically(path, full)
    view = textfile_view(collector.collect())
    assert view.pop(("node_textfile_scrape_error", ())) == 0.0
    assert view.pop(("node_textfile_mtime_seconds", (("file", str(path)),))) == pytest.approx(path.stat().st_mtime)
    assert view == {("queue_depth", (("queue", f"q{i}"),)): float(i * 111) for i in range(50)}


def test_missing_textfile_directory_is_an_error_metric(tmp_path):
    samples = list(TextfileCollector(TextfileOptions(str(tmp_path / "absent"))).collect())
    assert textfile_view(samples) == {("node_textfile_scrape_error", ()): 1.0}


def test_agent_process_delivers_both_inputs_through_its_spool(console, tmp_path):
    host = "inputs-agent"
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    write_atomically(textfiles / "backup.prom", BACKUP)
    config = {"console_url": console.url, "host": host, "interval": 1, "state_dir": str(tmp_path / "state"),
              "collectors": ["prometheus", "textfile"],
              "prometheus": {"targets": [{"job_name": "fleetdeck", "url": console.url + "/metrics", "interval": 2,
                                          "metric_relabel_configs": [{"source_labels": ["__name__"],
                                                                      "regex": "fleetdeck_ingest_.*",
                                                                      "action": "keep"}]}]},
              "textfile": {"directory": str(textfiles)}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    env = child_env(FLEETDECK_AGENT_TOKEN=console.agent_token(host))
    proc = subprocess.Popen([sys.executable, "-m", "agents", "--config", str(tmp_path / "agent.yaml")], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def stored():
            rows = console.services.db.run(lambda s: s.execute(text(
                "SELECT s.name, s.labels, COUNT(p.ts) FROM series s JOIN hosts h ON h.id = s.host_id "
                "LEFT JOIN samples p ON p.series_id = s.id WHERE h.name = :h GROUP BY s.name, s.labels"),
                {"h": host}).all())
            out = {(name, labels): n for name, labels, n in rows}
            scraped = [n for (name, labels), n in out.items() if name == "up" and '"job":"fleetdeck"' in labels]
            return out if scraped and scraped[0] >= 3 else None

        got = wait_for(stored, 60, "three scrapes stored", proc=proc)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    instance = f"127.0.0.1:{console.port}"
    labels = json.dumps({"instance": instance, "job": "fleetdeck"}, separators=(",", ":"))
    assert got[("fleetdeck_ingest_samples_total", labels)] >= 3
    scraped = {name for (name, lj) in got if json.loads(lj).get("job") == "fleetdeck"}
    assert set(HEALTH) <= scraped
    assert all(name.startswith("fleetdeck_ingest_") for name in scraped - set(HEALTH))  # the keep rule
    assert got[("backup_last_success_seconds", '{"instance":"db-1","job":"backup"}')] >= 3
    assert got[("node_textfile_scrape_error", "{}")] >= 3
    # The agent's own health counts both inputs.
    assert ("fleetdeck_agent_collector_success", '{"collector":"prometheus"}') in got
    assert ("fleetdeck_agent_collector_success", '{"collector":"textfile"}') in got
    # Twice as many textfile reads as scrapes: the target's interval is two agent cycles.
    ups = got[("up", labels)]
    assert got[("node_textfile_scrape_error", "{}")] >= 2 * ups - 2
