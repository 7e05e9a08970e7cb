"""The host page's sections, shared time range and gaps, and the explore page, in a real
headless Chromium against a real in-process console.

The data is the real host collector's (collectors/host.py) output on this machine: its
series names and labels as an agent sends them, pushed through the ingest API at 10 s
collects over the last minutes with a hole where the agent was stopped. Counters grow
at fixed rates, so rates and their expected values are known.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.parse
import uuid

import pytest

from tests.browser.playwright_api import Page, expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.harness import ConsoleHarness, wait_for

INTERVAL = 10
CPU_RATES = {"idle": 0.6, "user": 0.25, "system": 0.1, "iowait": 0.03}


def real_samples() -> list:
    """One collect of the real host collector, without what other tests running beside
    this one create and remove (mounts under /tmp, containers' veth interfaces), and at
    most three mounts."""
    from collectors.host import HostCollector

    samples = list(HostCollector().collect())
    mounts = sorted({s.labels["mountpoint"] for s in samples if "mountpoint" in s.labels
                     and not s.labels["mountpoint"].startswith(("/tmp/", "/mnt/"))}, key=len)[:3]
    out = []
    for s in samples:
        if "mountpoint" in s.labels and s.labels["mountpoint"] not in mounts:
            continue
        if s.name.startswith("node_network_") and s.labels.get("device", "").startswith("veth"):
            continue
        out.append(s)
    return out


def counter_rate(sample) -> float:  # noqa: ANN001
    if sample.name == "node_cpu_seconds_total":
        return CPU_RATES.get(sample.labels.get("mode"), 0.005)
    if sample.name.endswith("_seconds_total"):
        return 0.02
    return 1000.0


def history(samples: list, timestamps_ms: list[int], wobble: bool = False) -> list[dict]:
    """Ingest metrics for ``samples`` at ``timestamps_ms``: gauges keep their collected
    value, counters grow at :func:`counter_rate` per second. With ``wobble`` (for
    screenshots) both swing around that: rates by half, gauges by 5 %, over minutes."""
    metrics = []
    for n, s in enumerate(samples):
        # Memory gauges swing together, so that parts never outgrow the total (used >= 0).
        period = 90.0 if s.name.startswith("node_memory_") else 90.0 + 37 * (n % 5)
        if s.type == "counter":
            rate = counter_rate(s)
            points = [[ts, s.value + rate * ts / 1000.0
                       + (0.5 * rate * period * math.sin(ts / 1000.0 / period) if wobble else 0.0)]
                      for ts in timestamps_ms]
        else:
            points = [[ts, s.value * (1 + (0.05 * math.sin(ts / 1000.0 / period / 3) if wobble else 0.0))]
                      for ts in timestamps_ms]
        metrics.append({"name": s.name, "type": s.type, "labels": s.labels, "points": points})
    return metrics


@pytest.fixture(scope="module")
def real_host(console):  # noqa: ANN001
    """A host with 6 minutes of real-collector data, the agent stopped for 2 minutes
    in the middle; returns (name, samples, hole_start, hole_end) in Unix seconds."""
    host = "real-" + uuid.uuid4().hex[:6]
    token = console.agent_token(host)
    samples = real_samples()
    last = (int(time.time()) - 5) // INTERVAL * INTERVAL
    times = [last - INTERVAL * k for k in reversed(range(37))]  # 6 minutes
    hole = (last - 240, last - 120)  # no collects strictly inside: the agent was stopped
    kept = [t for t in times if not hole[0] < t < hole[1]]
    for i in range(0, len(kept), 8):
        status, body = console.push(host, token, history(samples, [t * 1000 for t in kept[i:i + 8]]))
        assert status == 200, body
        assert body["accepted_samples"] > 0, body
    return host, samples, hole[0], hole[1]


def chart_attr(page: Page, chart: str, name: str) -> str:
    return page.get_attribute(f"#{chart}", f"data-{name}") or ""


def wait_drawn(page: Page, chart: str, points: int = 1) -> None:
    try:
        page.wait_for_function("([sel, n]) => Number(document.querySelector(sel).dataset.points) >= n",
                               arg=[f"#{chart}", points])
    except Exception as exc:
        banner = page.locator("#error").inner_text() if page.locator("#error").is_visible() else ""
        state = page.evaluate("(sel) => { const c = document.querySelector(sel); return Object.assign({}, c.dataset,"
                              " {text: c.innerText.slice(0, 200)}); }", f"#{chart}")
        raise AssertionError(f"{chart}: fewer than {points} points drawn; banner: {banner!r}; chart: {state}") from exc


def drag(page: Page, chart: str, x0: float, x1: float) -> None:
    """Drag across the plot area of ``chart`` from fraction x0 to x1 of its width."""
    box = page.locator(f"#{chart} .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * x0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (x0 + x1) / 2, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * x1, y, steps=4)
    page.mouse.up()


def test_host_sections_show_real_collector_series(console, page, real_host):  # noqa: ANN001
    host, samples, _, hole_end = real_host
    errors = PageErrors(page)
    log_in(page, console)
    # The range ends at the last collect: this test may run minutes after the fixture
    # pushed its data, and a rate window that reaches past the last sample is rightly
    # extrapolated by only half an interval (Prometheus' extrapolatedRate), so "now" as
    # the end would make the latest per-core value depend on when the test runs.
    last = hole_end + 120
    page.goto(f"{console.url}/hosts/{host}?from={last - 600}&to={last}")
    for chart in ("chart-cpu", "chart-memory", "chart-load", "chart-disk", "chart-network"):
        wait_drawn(page, chart)

    # Every section opens and draws its charts from the series the collector sends.
    for section in ("cpu", "memory", "disks", "network", "pressure"):
        page.locator(f"#section-{section} > summary").click()
    cpus = sorted({s.labels["cpu"] for s in samples if s.name == "node_cpu_seconds_total"}, key=int)
    wait_drawn(page, "chart-cpu-cores")
    assert chart_attr(page, "chart-cpu-cores", "series") == str(len(cpus))
    legend = page.locator("#chart-cpu-cores .u-legend")
    for cpu in cpus:
        expect(legend).to_contain_text(f"cpu {cpu}")
    # Busy per core: every mode but idle, 0.25 + 0.1 + 0.03 + 0.005 per other mode, in %.
    other_modes = {s.labels["mode"] for s in samples if s.name == "node_cpu_seconds_total"} - set(CPU_RATES)
    busy = 100 * (0.25 + 0.1 + 0.03 + 0.005 * len(other_modes))
    page.mouse.move(0, 0)  # off the charts: the legends show the latest values, not the cursor's
    value = legend.locator(".u-series").nth(1).locator(".u-value").inner_text()
    assert abs(float(value.split()[0]) - busy) < 0.6, (value, busy)

    wait_drawn(page, "chart-memory-detail")
    for key in ("Used", "Cached", "Buffers", "Slab", "Free"):
        expect(page.locator("#chart-memory-detail .u-legend")).to_contain_text(key)
    wait_drawn(page, "chart-disk-devices")
    disks = {s.labels["device"] for s in samples if s.name == "node_disk_read_bytes_total"}
    for disk in disks:
        expect(page.locator("#chart-disk-devices .u-legend")).to_contain_text(f"read {disk}")
    wait_drawn(page, "chart-net-devices")
    nics = sorted({s.labels["device"] for s in samples if s.name == "node_network_receive_bytes_total"} - {"lo"})
    for nic in nics:
        expect(page.locator("#chart-net-devices .u-legend")).to_contain_text(f"receive {nic}")
    expect(page.locator("#chart-net-devices .u-legend")).not_to_contain_text("receive lo")
    if any(s.name.startswith("node_pressure_") for s in samples):
        wait_drawn(page, "chart-pressure")
        expect(page.locator("#chart-pressure .u-legend")).to_contain_text("io some")

    # Filesystems: one row per mount with size, use and inodes, and a chart per mount.
    size = {s.labels["mountpoint"]: s.value for s in samples if s.name == "node_filesystem_size_bytes"}
    avail = {s.labels["mountpoint"]: s.value for s in samples if s.name == "node_filesystem_avail_bytes"}
    assert size, "the host collector reports no filesystem on this machine"
    expect(page.locator("#mounts-table tbody tr")).to_have_count(len(size))
    for mount in size:
        row = page.locator(f'#mounts-table tr[data-mount="{mount}"]')
        expect(row).to_be_visible()
        used = 100 * (1 - avail[mount] / size[mount])
        cell = row.locator("td").nth(6).inner_text()
        assert abs(float(cell.split()[0]) - used) < 0.6, (mount, cell, used)
        expect(page.locator("#chart-fs-used .u-legend")).to_contain_text(mount)
    wait_drawn(page, "chart-fs-inodes")
    expect(page.locator("#error")).to_be_hidden()

    # Open and closed sections stay so on the next visit; a closed one is not queried.
    page.locator("#section-network > summary").click()
    # The toggle event that stores the choice is queued after the click: wait for it.
    page.wait_for_function("() => JSON.parse(localStorage.getItem('fleetdeck.hostSections') || '{}')"
                           "['section-network'] === false")
    page.reload()
    for section in ("cpu", "memory", "disks", "pressure", "filesystems"):
        expect(page.locator(f"#section-{section}")).to_have_attribute("open", "")
    expect(page.locator("#section-network")).not_to_have_attribute("open", "")
    wait_drawn(page, "chart-cpu-cores")
    assert chart_attr(page, "chart-net-devices", "points") == "0"
    errors.assert_clean()


def test_gap_where_the_agent_was_stopped(console, page, real_host):  # noqa: ANN001
    host, samples, hole_start, hole_end = real_host
    # The same data without the stop, for comparison: no gaps at all.
    steady = "steady-" + uuid.uuid4().hex[:6]
    last = (int(time.time()) - 5) // INTERVAL * INTERVAL
    status, body = console.push(steady, console.agent_token(steady),
                                history([s for s in samples if s.name.startswith(("node_load", "node_memory_Mem"))],
                                        [(last - INTERVAL * k) * 1000 for k in range(20)]))
    assert status == 200, body
    errors = PageErrors(page)
    log_in(page, console)
    page.goto(f"{console.url}/hosts/{host}")
    for chart in ("chart-load", "chart-memory", "chart-cpu", "chart-network"):
        wait_drawn(page, chart)
        # One null per series, inside the hole: uPlot breaks every line there.
        series = int(chart_attr(page, chart, "series"))
        assert series > 0 and chart_attr(page, chart, "gaps") == str(series), chart
        at = [int(x) for x in chart_attr(page, chart, "gap-at").split(",")]
        assert len(at) == 1 and hole_start < at[0] < hole_end + 2 * INTERVAL, (chart, at, hole_start, hole_end)
    errors.assert_clean()

    page.goto(f"{console.url}/hosts/{steady}")
    for chart in ("chart-load", "chart-memory"):
        wait_drawn(page, chart, 20)
        assert chart_attr(page, chart, "gaps") == "0", chart
    errors.assert_clean()


def test_zoom_applies_to_every_chart_and_resets(console, page, real_host):  # noqa: ANN001
    host, _, _, _ = real_host
    errors = PageErrors(page)
    log_in(page, console)
    page.goto(f"{console.url}/hosts/{host}?from=now-15m&to=now")
    charts = ("chart-cpu", "chart-memory", "chart-load", "chart-disk", "chart-network")
    for chart in charts:
        wait_drawn(page, chart)
    before = (int(chart_attr(page, "chart-load", "xmin")), int(chart_attr(page, "chart-load", "xmax")))
    assert 899 <= before[1] - before[0] <= 901
    expect(page.locator("#zoom-reset")).to_be_hidden()

    drag(page, "chart-memory", 0.5, 0.9)
    page.wait_for_function("() => document.querySelector('#range-picker').dataset.to !== 'now'")
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    start, end = int(params["from"][0]), int(params["to"][0])
    assert before[0] + 300 < start < end < before[1] and 250 < end - start < 450, (before, start, end)
    for chart in charts:  # every chart, not only the one dragged on, shows the new range
        page.wait_for_function("([sel, a, b]) => document.querySelector(sel).dataset.xmin == a"
                               " && document.querySelector(sel).dataset.xmax == b",
                               arg=[f"#{chart}", str(start), str(end)])
    expect(page.locator("#zoom-reset")).to_be_visible()
    expect(page.locator('.range-btn[aria-pressed="true"]')).to_have_count(0)
    expect(page.locator("#range-label")).to_contain_text("→")

    # A second zoom, then one reset goes back to the range before the first.
    drag(page, "chart-load", 0.2, 0.6)
    page.wait_for_function("([a]) => document.querySelector('#range-picker').dataset.from !== a", arg=[str(start)])
    page.click("#zoom-reset")
    expect(page.locator('.range-btn[data-range="900"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#zoom-reset")).to_be_hidden()
    assert "from=" not in page.url
    for chart in charts:
        page.wait_for_function("([sel]) => Number(document.querySelector(sel).dataset.xmax) - "
                               "Number(document.querySelector(sel).dataset.xmin) > 890", arg=[f"#{chart}"])
    expect(page.locator("#error")).to_be_hidden()
    errors.assert_clean()


def test_range_in_url_custom_range_and_presets(console, page, real_host):  # noqa: ANN001
    host, _, _, _ = real_host
    errors = PageErrors(page)
    log_in(page, console)
    end = int(time.time()) // 60 * 60
    start = end - 1800
    # An absolute range from the URL is what the charts show, and survives a reload.
    page.goto(f"{console.url}/hosts/{host}?from={start}&to={end}")
    wait_drawn(page, "chart-load")
    assert chart_attr(page, "chart-load", "xmin") == str(start)
    assert chart_attr(page, "chart-load", "xmax") == str(end)
    page.reload()
    wait_drawn(page, "chart-load")
    assert chart_attr(page, "chart-load", "xmax") == str(end)

    # A relative custom range typed in the form.
    page.click("#range-custom-toggle")
    page.fill("#range-from", "now-2h")
    page.fill("#range-to", "now")
    page.locator("#range-form button[type=submit]").click()
    page.wait_for_url("**from=now-2h**")
    page.wait_for_function("() => Number(document.querySelector('#chart-load').dataset.xmax)"
                           " - Number(document.querySelector('#chart-load').dataset.xmin) > 7190")
    # An absolute custom range, typed in UTC after the time-zone switch.
    page.click("#tz-switch")
    page.click("#range-custom-toggle")
    page.fill("#range-from", time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)))
    page.fill("#range-to", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(end)))
    page.locator("#range-form button[type=submit]").click()
    page.wait_for_url(f"**from={start}&to={end}**")
    expect(page.locator("#range-label")).to_have_text(
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)) + " → "
        + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(end)))
    page.wait_for_function("([a]) => document.querySelector('#chart-load').dataset.xmin == a", arg=[str(start)])
    page.click("#tz-switch")
    page.click("#range-custom-toggle")
    page.fill("#range-from", "now-2h")
    page.fill("#range-to", "now")
    page.locator("#range-form button[type=submit]").click()
    page.wait_for_url("**from=now-2h**")

    # Nonsense is refused in place, the range unchanged.
    page.click("#range-custom-toggle")
    page.fill("#range-from", "yesterday-ish")
    page.locator("#range-form button[type=submit]").click()
    expect(page.locator("#range-form-error")).to_contain_text("now-15m")
    assert "from=now-2h" in page.url

    # A preset; the default one leaves the URL clean.
    page.click('.range-btn[data-range="3600"]')
    page.wait_for_url("**from=now-1h**")
    page.click('.range-btn[data-range="900"]')
    page.wait_for_function("() => !location.search.includes('from=')")
    expect(page.locator("#error")).to_be_hidden()
    errors.assert_clean()


def test_explore_promql_table_chart_and_url(console, page, real_host):  # noqa: ANN001
    host, samples, _, _ = real_host
    errors = PageErrors(page)
    log_in(page, console)
    page.click('.nav-links a[href="/explore"]')
    page.wait_for_url(f"{console.url}/explore")

    # The metric names come from the Prometheus API, as autocomplete options.
    page.wait_for_function("() => document.querySelectorAll('#metric-names option').length > 50")
    assert page.locator('#metric-names option[value="node_cpu_seconds_total"]').count() == 1

    # Builder: metric, a label filter (name and value suggested), a function and an aggregation.
    page.fill("#explore-metric", "node_cpu_seconds_total")
    page.locator("#explore-metric").dispatch_event("change")
    page.wait_for_function("() => document.querySelector('#label-names option[value=\"mode\"]') !== null")
    page.click("#add-filter")
    page.fill("#explore-filters .filter-name", "host")
    page.locator("#explore-filters .filter-name").dispatch_event("change")
    page.locator("#explore-filters .filter-value").focus()
    page.wait_for_function("([h]) => document.querySelector('#explore-filters datalist option[value=\"' + h + '\"]')",
                           arg=[host])
    page.fill("#explore-filters .filter-value", host)
    page.locator("#explore-filters .filter-value").dispatch_event("change")
    page.select_option("#explore-fn", "rate")
    page.fill("#explore-by", "mode")
    page.select_option("#explore-agg", "avg")
    expr = page.input_value("#promql")
    assert expr.startswith("avg by (mode) (rate(node_cpu_seconds_total{host=") and host in expr, expr
    modes = {s.labels["mode"] for s in samples if s.name == "node_cpu_seconds_total"}
    page.wait_for_function("([n]) => document.querySelector('#explore-status').dataset.series == n",
                           arg=[str(len(modes))])
    wait_drawn(page, "explore-chart")
    expect(page.locator("#explore-chart .u-legend")).to_contain_text('{mode="user"}')

    # A PromQL expression typed by hand; the table shows its value.
    page.fill("#promql", f'sum(rate(node_cpu_seconds_total{{host="{host}", mode="user"}}[1m]))')
    page.click("#run-query")
    page.wait_for_function("() => document.querySelector('#explore-status').dataset.series == '1'")
    page.click("#view-table")
    cpus = len({s.labels["cpu"] for s in samples if s.name == "node_cpu_seconds_total"})
    # The Max column: steps whose window the samples cover are exact (the counters grow
    # linearly); steps near the hole and after the last collect extrapolate less, as in
    # Prometheus.
    peak = page.locator("#explore-table tbody tr").first.locator("td").nth(3).inner_text()
    assert abs(float(peak) - 0.25 * cpus) < 0.01, (peak, cpus)

    # The URL carries the query, range and view: opened afresh it shows the same. Three
    # hours at a 30 s step read raw samples; from 6 hours (a 1 m step) the rollup tier
    # answers once the job has rolled up the minutes after the hole, and there the
    # bucket after a gap holds the growth across it (docs/promql.md, "Deviations").
    page.click('.range-btn[data-range="10800"]')
    page.wait_for_url("**from=now-3h**")
    url = page.url
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert params["view"] == ["table"] and params["from"] == ["now-3h"]
    assert params["query"][0].startswith("sum(rate(node_cpu_seconds_total")
    fresh = page.context.new_page()
    fresh_errors = PageErrors(fresh)
    fresh.goto(url)
    assert fresh.input_value("#promql") == params["query"][0]
    expect(fresh.locator("#explore-table-panel")).to_be_visible()
    expect(fresh.locator("#view-table")).to_have_attribute("aria-pressed", "true")
    expect(fresh.locator('.range-btn[data-range="10800"]')).to_have_attribute("aria-pressed", "true")
    fresh.wait_for_function("() => document.querySelector('#explore-status').dataset.series == '1'")
    again = fresh.locator("#explore-table tbody tr").first.locator("td").nth(3).inner_text()
    assert abs(float(again) - 0.25 * cpus) < 0.01, again
    fresh_errors.assert_clean()

    # A bad expression: the parser's message in the banner, not a blank page.
    page.fill("#promql", "sum(rate(")
    page.click("#run-query")
    expect(page.locator("#error")).to_contain_text("bad_data")
    errors.console.clear()  # the browser logs the 400 as a resource error
    errors.assert_clean()


def start_agent(console, host: str, state, interval: int) -> subprocess.Popen:  # noqa: ANN001
    """The real agent (``python -m agents``) collecting this machine every ``interval`` s."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, FLEETDECK_AGENT_TOKEN=console.agent_token(host),
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "agents", "--console", console.url, "--host", host,
                             "--interval", str(interval)], env=env, cwd=state,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture
def own_console(tmp_path):
    """A console of this test's own: its real agent's series stay out of the module's."""
    harness = ConsoleHarness(tmp_path / "console").start()
    yield harness
    harness.close()


def test_gap_and_zoom_where_a_real_agent_was_stopped(own_console, page, tmp_path):  # noqa: ANN001
    """A real agent process collects this machine every 2 s, is stopped for 40 s (as a
    service stop would: terminated) and started again: every chart of the host page
    breaks its lines once, inside the stop, and a drag over that stretch zooms every
    chart to it, the gap still drawn."""
    console = own_console
    host = "stopped-" + uuid.uuid4().hex[:6]
    state = tmp_path / "agent"  # the agent's working folder (its spool)
    state.mkdir()
    viewer = console.api_token("viewer")

    def samples_since(t: float) -> bool:
        body = console.request("GET", "/api/v1/metrics/range?" + urllib.parse.urlencode(
            {"metric": "node_load1", "host": host, "fn": "raw", "start": t, "end": time.time() + 1}), token=viewer).json()
        return bool(body["series"]) and len(body["series"][0]["points"]) >= 3

    def run_agent() -> None:
        """Start the agent, let it collect for 20 s after its first stored collects (a rate
        at 10 s steps over a 12 s window needs some of them on each side of the stop), stop it."""
        since = time.time()
        agent = start_agent(console, host, state, 2)
        try:
            wait_for(lambda: samples_since(since), 60, "the agent's collects", proc=agent)
            time.sleep(20)
        finally:
            stop(agent)

    run_agent()
    stopped = time.time()
    time.sleep(40)
    resumed = time.time()
    run_agent()

    errors = PageErrors(page)
    log_in(page, console)
    page.goto(f"{console.url}/hosts/{host}?from=now-3m&to=now")
    charts = ("chart-cpu", "chart-memory", "chart-load", "chart-disk", "chart-network")
    for chart in charts:
        wait_drawn(page, chart, 2)
        # Rates over the agent's 2 s interval (known once the host's header has loaded).
        page.wait_for_function("([sel]) => { const d = document.querySelector(sel).dataset;"
                               " return Number(d.series) > 0 && d.gaps === d.series; }", arg=[f"#{chart}"])
        at = [int(x) for x in chart_attr(page, chart, "gap-at").split(",")]
        assert len(at) == 1 and stopped - 10 < at[0] < resumed + 10, (chart, at, stopped, resumed)

    # Drag over the stretch from before the stop to after it, on one chart: all follow.
    xmin, xmax = int(chart_attr(page, "chart-load", "xmin")), int(chart_attr(page, "chart-load", "xmax"))
    frac = [(t - xmin) / (xmax - xmin) for t in (stopped - 30, resumed + 20)]
    drag(page, "chart-memory", max(0.01, frac[0]), min(0.99, frac[1]))
    page.wait_for_function("() => document.querySelector('#range-picker').dataset.to !== 'now'")
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
    start, end = int(params["from"][0]), int(params["to"][0])
    assert start < stopped and resumed < end, (start, stopped, resumed, end)
    for chart in charts:
        page.wait_for_function("([sel, a, b]) => document.querySelector(sel).dataset.xmin == a"
                               " && document.querySelector(sel).dataset.xmax == b",
                               arg=[f"#{chart}", str(start), str(end)])
        series = int(chart_attr(page, chart, "series"))
        assert chart_attr(page, chart, "gaps") == str(series), chart
    expect(page.locator("#zoom-reset")).to_be_visible()
    expect(page.locator("#error")).to_be_hidden()
    errors.assert_clean()
