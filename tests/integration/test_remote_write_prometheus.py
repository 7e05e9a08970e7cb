"""A real Prometheus (Debian's 2.42) scrapes a real node_exporter, itself and the console's
/metrics, and remote-writes into the console with an agent token: every sample Prometheus
holds over a window is stored in the console, with the same labels, timestamps and values,
and Prometheus counts no failed or dropped sample."""
from __future__ import annotations

import json
import math
import shutil
import time
import urllib.request
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.conftest import need
from tests.harness import wait_for
from tests.integration.exporters import start_node_exporter, start_process, stop_process
from tests.integration.procs import free_port

HOST = "prom-rw"
SCRAPE_S = 2


def get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


@pytest.fixture(scope="module")
def node_exporter(tmp_path_factory):
    work = tmp_path_factory.mktemp("node-exporter")
    (work / "textfile").mkdir()
    address, proc = start_node_exporter(work, work / "textfile")
    yield address
    stop_process(proc)


@pytest.fixture(scope="module")
def prometheus_rw(console, node_exporter, tmp_path_factory):
    if not shutil.which("prometheus"):
        need("prometheus", "prometheus is not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("prom-rw")
    port = free_port()
    token = console.agent_token(HOST)
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s"},
        "scrape_configs": [
            {"job_name": "node", "static_configs": [{"targets": [node_exporter]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {"job_name": "fleetdeck", "static_configs": [{"targets": [f"127.0.0.1:{console.port}"]}]},
        ],
        "remote_write": [{
            "url": f"{console.url}/api/v1/write",
            "authorization": {"credentials": token},
            "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "2s"},
            "metadata_config": {"send_interval": "5s"},
        }],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    url = f"http://127.0.0.1:{port}"
    proc = start_process(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                          f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                         work / "log", url + "/-/ready", "prometheus")
    yield url, time.time()
    stop_process(proc)


def prom_samples(url: str, at: float, window_s: int) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Every raw sample Prometheus holds in [at - window_s, at]: {(name, labels JSON): [(ts, value)]}."""
    q = urlencode({"query": f'{{__name__=~".+"}}[{window_s}s]', "time": f"{at:.3f}"})
    body = json.loads(get(f"{url}/api/v1/query?{q}"))
    assert body["status"] == "success", body
    out = {}
    for series in body["data"]["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        key = (name, json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        out[key] = [(round(float(t) * 1000), float(v)) for t, v in series["values"]]
    return out


def console_samples(console, lo_ms: int, hi_ms: int) -> dict[tuple[str, str], list[tuple[int, float]]]:
    rows = console.services.db.run(lambda s: s.execute(text(
        "SELECT s.name, s.labels, p.ts, p.value FROM samples p JOIN series s ON s.id = p.series_id "
        "JOIN hosts h ON h.id = s.host_id WHERE h.name = :h AND p.ts BETWEEN :lo AND :hi ORDER BY p.ts"),
        {"h": HOST, "lo": lo_ms, "hi": hi_ms}).all())
    out: dict = {}
    for name, labels, ts, value in rows:
        out.setdefault((name, labels), []).append((ts, value))
    return out


def console_series(console) -> set[tuple[str, str]]:
    return set(console.services.db.run(lambda s: s.execute(text(
        "SELECT s.name, s.labels FROM series s JOIN hosts h ON h.id = s.host_id WHERE h.name = :h"),
        {"h": HOST}).all()))


def non_finite_rejections(console) -> int:
    return console.services.db.run(lambda s: s.execute(text(
        "SELECT COALESCE(SUM(r.count), 0) FROM ingest_rejections r JOIN hosts h ON h.id = r.host_id "
        "WHERE h.name = :h AND r.reason = 'non_finite'"), {"h": HOST}).scalar_one())


def prom_counters(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(get(url + "/metrics").decode()):
        for sample in family.samples:
            if sample.name.startswith("prometheus_remote_storage_"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def split_nan(samples: dict) -> tuple[dict, int]:
    """-> (the samples without NaN values, how many NaN values there were)."""
    finite, nans = {}, 0
    for key, points in samples.items():
        kept = [(t, v) for t, v in points if not math.isnan(v)]
        nans += len(points) - len(kept)
        if kept:
            finite[key] = kept
    return finite, nans


def test_every_sample_prometheus_holds_is_stored_with_its_labels(console, prometheus_rw):
    url, started = prometheus_rw
    window_s = 24
    at = started + 10 + window_s  # the window starts once every target was scraped a few times
    time.sleep(max(0.0, at + 5 - time.time()))  # + 5 s: every scrape up to `at` is appended
    want_all = prom_samples(url, at, window_s)
    want, nans = split_nan(want_all)
    jobs = {json.loads(labels)["job"] for _, labels in want}
    assert jobs == {"node", "prometheus", "fleetdeck"}
    assert sum(map(len, want.values())) > 10 * len(want) / SCRAPE_S > 1000
    lo, hi = round((at - window_s) * 1000), round(at * 1000)

    def arrived():
        return console_samples(console, lo, hi) == want

    try:
        wait_for(arrived, 60, "the console to hold every sample Prometheus holds", interval=1.0)
    except AssertionError:
        got = console_samples(console, lo, hi)
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])[:5]
        raise AssertionError(f"{len(want)} series wanted, {len(got)} stored; missing {missing}; extra {extra}; "
                             f"differing {[(k, want[k], got[k]) for k in differ]}") from None
    # Series whose samples in the window were all NaN exist too, with their exact labels.
    assert set(want_all) <= console_series(console)
    # NaN values (summaries with no observations) are counted, not stored: at least those seen
    # (they may travel in a later request than the finite samples of the same scrape).
    assert nans > 0
    wait_for(lambda: non_finite_rejections(console) >= nans, 30, f"{nans} NaN samples counted as non_finite")
    counters = prom_counters(url)
    assert counters["prometheus_remote_storage_samples_total"] >= sum(map(len, want_all.values()))
    assert counters["prometheus_remote_storage_samples_failed_total"] == 0, counters
    assert counters["prometheus_remote_storage_samples_dropped_total"] == 0, counters
    # The console's own request histograms came through Prometheus intact (bucket labels too).
    assert any(name == "fleetdeck_http_request_duration_seconds_bucket" and '"le":"+Inf"' in labels
               for name, labels in want)
