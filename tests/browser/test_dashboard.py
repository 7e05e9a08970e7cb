"""The dashboard in a real headless Chromium against a real in-process console.

Fixtures (tests/conftest.py): ``console`` (url, admin_user, admin_password,
agent_token(host), push(host, token, metrics, logs=(), batch_id=None)) and ``browser``
(a Playwright Browser on Debian's chromium; skips or fails per FLEETDECK_REQUIRE).

What is checked: logging in through the form, the overview and host pages loading
without console errors under the production CSP, live updates growing a chart without
a reload, and host-controlled strings (names, labels, agent versions) rendering as text.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from tests.browser.playwright_api import Page, expect

TIMEOUT_MS = 15_000
XSS = "<img src=x onerror=alert(1)>"
GIB = 1024 ** 3


# ----------------------------------------------------------------- metric batches


def host_metrics(timestamps_ms: list[int], *, cpus: int = 2) -> list[dict]:
    """node_exporter-shaped samples at ``timestamps_ms`` (as an agent would push them):
    CPU, memory, load, disk, network (with ``lo``) and filesystem series; counters grow
    with the sample's time so rates come out steady and plausible."""
    def counter(base: float, per_second: float) -> list[list[float]]:
        return [[ts, base + per_second * ts / 1000.0] for ts in timestamps_ms]

    def gauge(fn) -> list[list[float]]:  # noqa: ANN001
        return [[ts, fn(i)] for i, ts in enumerate(timestamps_ms)]

    metrics: list[dict] = []
    shares = {"user": 0.23, "system": 0.07, "iowait": 0.02, "softirq": 0.01, "idle": 0.67}
    for cpu in range(cpus):
        for mode, share in shares.items():
            metrics.append({"name": "node_cpu_seconds_total", "type": "counter",
                            "labels": {"cpu": str(cpu), "mode": mode}, "points": counter(1000.0 * cpu, share)})
    metrics += [
        {"name": "node_memory_MemTotal_bytes", "type": "gauge", "labels": {}, "points": gauge(lambda i: 8.0 * GIB)},
        {"name": "node_memory_MemAvailable_bytes", "type": "gauge", "labels": {},
         "points": gauge(lambda i: 5.0 * GIB - (i % 7) * 48 * 1024 ** 2)},
        {"name": "node_memory_Cached_bytes", "type": "gauge", "labels": {}, "points": gauge(lambda i: 2.1 * GIB)},
        {"name": "node_memory_Buffers_bytes", "type": "gauge", "labels": {}, "points": gauge(lambda i: 0.25 * GIB)},
        {"name": "node_load1", "type": "gauge", "labels": {}, "points": gauge(lambda i: 0.4 + (i % 5) * 0.11)},
        {"name": "node_load5", "type": "gauge", "labels": {}, "points": gauge(lambda i: 0.5 + (i % 3) * 0.03)},
        {"name": "node_load15", "type": "gauge", "labels": {}, "points": gauge(lambda i: 0.45)},
        {"name": "node_disk_read_bytes_total", "type": "counter", "labels": {"device": "sda"},
         "points": counter(3e9, 1.5e6)},
        {"name": "node_disk_written_bytes_total", "type": "counter", "labels": {"device": "sda"},
         "points": counter(9e9, 4.2e6)},
        {"name": "node_network_receive_bytes_total", "type": "counter", "labels": {"device": "eth0"},
         "points": counter(5e9, 2.4e6)},
        {"name": "node_network_transmit_bytes_total", "type": "counter", "labels": {"device": "eth0"},
         "points": counter(1e9, 0.6e6)},
        {"name": "node_network_receive_bytes_total", "type": "counter", "labels": {"device": "lo"},
         "points": counter(1e8, 9e6)},
        {"name": "node_network_transmit_bytes_total", "type": "counter", "labels": {"device": "lo"},
         "points": counter(1e8, 9e6)},
        {"name": "node_filesystem_size_bytes", "type": "gauge",
         "labels": {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}, "points": gauge(lambda i: 100.0 * GIB)},
        {"name": "node_filesystem_avail_bytes", "type": "gauge",
         "labels": {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}, "points": gauge(lambda i: 38.0 * GIB)},
    ]
    return metrics


def history(now: float, *, count: int = 12, interval: int = 10, end_offset: int = 20) -> list[int]:
    """``count`` collect times ``interval`` seconds apart, the last ``end_offset`` s ago,
    aligned to whole intervals like an agent's schedule."""
    last = (int(now) - end_offset) // interval * interval
    return [(last - interval * k) * 1000 for k in reversed(range(count))]


def push_ok(console, host: str, token: str, metrics: list[dict]) -> dict:  # noqa: ANN001
    status, body = console.push(host, token, metrics)
    assert status == 200, body
    assert body["accepted_samples"] > 0, body
    return body


def raw_ingest(console, token: str, doc: dict) -> tuple[int, dict]:  # noqa: ANN001
    """POST an ingest body with fields ``console.push`` does not set (agent, labels)."""
    request = urllib.request.Request(
        console.url + "/api/v1/ingest", data=json.dumps(doc).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# ----------------------------------------------------------------- browser helpers


# Chromium aborts the requests in flight when the machine's network interfaces change (here:
# containers of other tests starting and stopping) and logs it as a console error; the
# pages retry such a GET (common.js fetchJSON), so it is not the page's error.
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


class PageErrors:
    """Collects console errors (but the network-changed notes above), uncaught exceptions
    and dialogs of one page."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.text} @ {msg.location}")
                if msg.type == "error" and NETWORK_CHANGED not in msg.text else None)
        page.on("pageerror", lambda exc: self.exceptions.append(str(exc)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:  # noqa: ANN001
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def assert_clean(self) -> None:
        assert self.exceptions == [], self.exceptions
        assert self.console == [], self.console
        assert self.dialogs == [], self.dialogs


def log_in(page: Page, console) -> None:  # noqa: ANN001
    page.goto(console.url + "/login")
    page.fill("#username", console.admin_user)
    page.fill("#password", console.admin_password)
    page.click("#login-submit")
    page.wait_for_url(console.url + "/")


def chart_points(page: Page, chart: str) -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


def wait_points_above(page: Page, chart: str, n: int) -> int:
    page.wait_for_function(
        "([sel, n]) => Number(document.querySelector(sel).dataset.points) > n",
        arg=[f"#{chart}", n], timeout=TIMEOUT_MS)
    return chart_points(page, chart)


# ----------------------------------------------------------------- tests


CHARTS = ("chart-cpu", "chart-memory", "chart-load", "chart-disk", "chart-network")


def test_login_overview_and_host_page(console, page):  # noqa: ANN001
    host = "web-" + uuid.uuid4().hex[:6]
    push_ok(console, host, console.agent_token(host), host_metrics(history(time.time())))
    errors = PageErrors(page)

    # An anonymous visitor is sent to the login form; a wrong password says so.
    page.goto(console.url + "/")
    expect(page.locator("#login-submit")).to_be_visible()
    page.fill("#username", console.admin_user)
    page.fill("#password", "definitely-not-the-password")
    page.click("#login-submit")
    expect(page.locator(".form-error")).to_contain_text("Wrong")
    errors.console.clear()  # the browser logs the 401 of the failed login as a resource error

    log_in(page, console)
    card = page.locator(f'.host-card[data-host="{host}"]')
    expect(card).to_be_visible()
    expect(card.locator(".badge")).to_have_class("badge up")
    expect(card.locator(".badge")).to_have_text("UP")
    expect(card).to_contain_text("last seen")
    expect(card).to_contain_text("%")  # cpu / memory / disk ratios
    expect(card).to_have_attribute("href", f"/hosts/{host}")
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator(".topnav")).to_contain_text(console.admin_user)

    card.click()
    page.wait_for_url(f"{console.url}/hosts/{host}")
    expect(page.locator("#host-page")).to_have_attribute("data-host", host)
    expect(page.locator("#host-status")).to_have_text("UP")
    for chart in CHARTS:
        wait_points_above(page, chart, 0)
        expect(page.locator(f"#{chart} canvas")).to_have_count(1)
    # memory is shown in IEC bytes, CPU in percent, and lo is excluded from network
    expect(page.locator("#chart-memory .u-legend")).to_contain_text("Used")
    expect(page.locator("#chart-cpu .u-legend")).to_contain_text("user")
    expect(page.locator("#error")).to_be_hidden()

    # The range selector re-queries without a reload.
    page.click('.range-btn[data-range="3600"]')
    expect(page.locator('.range-btn[data-range="3600"]')).to_have_attribute("aria-pressed", "true")
    wait_points_above(page, "chart-load", 0)
    expect(page.locator("#error")).to_be_hidden()
    errors.assert_clean()

    # Failures are shown, never swallowed: with the session gone, the next queries'
    # 401s land in the banner.
    page.context.clear_cookies()
    page.click('.range-btn[data-range="900"]')
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("401")


def test_live_frame_grows_chart_without_reload(console, page):  # noqa: ANN001
    host = "live-" + uuid.uuid4().hex[:6]
    token = console.agent_token(host)
    now = time.time()
    push_ok(console, host, token, host_metrics(history(now)))
    errors = PageErrors(page)
    log_in(page, console)
    page.goto(f"{console.url}/hosts/{host}")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    before = wait_points_above(page, "chart-load", 0)
    net_before = wait_points_above(page, "chart-network", 0)
    page.evaluate("window.__notReloaded = true")

    # A newer collect arrives (one interval after the last one shown, at "now").
    push_ok(console, host, token, host_metrics([int(time.time()) * 1000]))
    after = wait_points_above(page, "chart-load", before)
    assert after == before + 1
    # Rates are Prometheus' rate(x[window]) evaluated on the step grid, so a rate point
    # exists once its step boundary has passed: as with a real agent, the next collect
    # after that boundary brings it.
    step = 10
    time.sleep(step - time.time() % step + 0.2)
    push_ok(console, host, token, host_metrics([int(time.time()) * 1000]))
    wait_points_above(page, "chart-network", net_before)  # rates extend too
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#error")).to_be_hidden()
    errors.assert_clean()


def test_host_controlled_strings_render_as_text(console, page):  # noqa: ANN001
    # Host names are restricted to [A-Za-z0-9._-] by ingest, so the payload travels in
    # the fields an agent does control (labels, agent version) and in the page URL.
    host = "xss-" + uuid.uuid4().hex[:6]
    token = console.agent_token(host)
    now_ms = int(time.time()) * 1000
    status, body = raw_ingest(console, token, {
        "host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
        "agent": {"version": XSS[:64], "interval": 10},
        "labels": {"role": XSS, "note": '"><script>alert(2)</script>'},
        "metrics": host_metrics([now_ms - 10_000, now_ms]), "logs": []})
    assert status == 200, body
    errors = PageErrors(page)
    log_in(page, console)

    card = page.locator(f'.host-card[data-host="{host}"]')
    expect(card).to_be_visible()
    expect(card.locator(".label-chip", has_text=f"role={XSS}")).to_be_visible()
    expect(card.locator(".agent-version")).to_have_text(f"agent {XSS}")
    assert page.locator("#hosts img").count() == 0
    assert page.locator("#hosts script").count() == 0

    page.goto(f"{console.url}/hosts/{host}")
    expect(page.locator("#host-agent")).to_have_text(XSS)
    expect(page.locator("#host-labels .label-chip", has_text=f"role={XSS}")).to_be_visible()
    assert page.locator("#host-page img").count() == 0

    errors.assert_clean()
    # A hostile name in the URL itself: no such host, so a 404 page naming it, as text.
    response = page.goto(f"{console.url}/hosts/{urllib.parse.quote(XSS, safe='')}")
    assert response is not None and response.status == 404
    expect(page.locator("#error-title")).to_contain_text(XSS)
    assert page.locator("main img").count() == 0 and page.locator("#host-page").count() == 0
    assert errors.exceptions == [] and errors.dialogs == []
    assert [m for m in errors.console if "404" not in m] == [], errors.console  # the page's own status


def test_overview_lists_drifting_hosts(console, page):  # noqa: ANN001
    tag = uuid.uuid4().hex[:6]
    now_ms = int(time.time()) * 1000
    # Three hosts on the fleet's common version and config, one odd version, one odd config.
    layout = [(f"fleet-{tag}-{i}", "0.1.0", "c0ffee00c0ffee00") for i in range(3)] + [
        (f"odd-version-{tag}", "0.0.1", "c0ffee00c0ffee00"), (f"odd-config-{tag}", "0.1.0", "deadbeefdeadbeef")]
    for i in range(4):  # outnumber hosts other tests of this module pushed with other versions
        layout.append((f"fleet-{tag}-x{i}", "0.1.0", "c0ffee00c0ffee00"))
    for host, version, chash in layout:
        status, body = raw_ingest(console, console.agent_token(host), {
            "host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
            "agent": {"version": version, "interval": 10, "config_hash": chash},
            "metrics": host_metrics([now_ms]), "logs": []})
        assert status == 200, body
    errors = PageErrors(page)
    log_in(page, console)
    panel = page.locator("#drift")
    expect(panel).to_be_visible()
    expect(panel.locator(".drift-item", has_text=f"odd-version-{tag}")).to_contain_text("agent version 0.0.1")
    expect(panel.locator(".drift-item", has_text=f"odd-config-{tag}")).to_contain_text("config deadbeefdeadbeef")
    assert panel.locator(".drift-item", has_text=f"fleet-{tag}-").count() == 0
    expect(page.locator(f'.host-card[data-host="odd-version-{tag}"] .drift-badge')).to_be_visible()
    expect(page.locator(f'.host-card[data-host="fleet-{tag}-0"] .drift-badge')).to_be_hidden()
    errors.assert_clean()
