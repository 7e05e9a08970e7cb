"""Every page on a laptop (1440×900) and a phone (390×844), in the light and the dark
theme, in a real headless Chromium against a real console: nothing wider than the
screen, no console errors, the page's own text there; the phone's menu; the theme and
time-zone switches, kept across pages.

The theme follows the browser's prefers-color-scheme (Playwright's ``color_scheme``)
until the switch is used; the pages' colours come from CSS custom properties of :root.
"""
from __future__ import annotations

import time
import uuid

import pytest

from tests.browser.playwright_api import Page, expect
from tests.browser.test_dashboard import PageErrors, history, host_metrics, log_in, push_ok

VIEWPORTS = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
BACKGROUND = {"dark": "rgb(17, 18, 23)", "light": "rgb(244, 245, 245)"}  # --bg of each theme


@pytest.fixture(scope="module")
def layout_host(console) -> str:  # noqa: ANN001
    host = "layout-" + uuid.uuid4().hex[:6]
    token = console.agent_token(host)
    push_ok(console, host, token, host_metrics(history(time.time(), count=30)))
    status, body = console.push(host, token, [], logs=[
        {"ts": int(time.time() * 1000) - 5000, "source": "/var/log/syslog", "level": "info",
         "line": "sshd[812]: Accepted publickey for deploy from 192.0.2.4 port 51234 ssh2: ED25519 "
                 "SHA256:" + "x" * 120}])
    assert status == 200, body
    return host


def pages(host: str) -> list[tuple[str, str]]:
    """(path, text the page shows once loaded) of every page a user reaches from the menu."""
    return [
        ("/", host),
        (f"/hosts/{host}", "Filesystems"),
        ("/explore?query=node_load1", "1 series"),
        ("/deploys", "Deploys"),
        (f"/logs?host={host}", "Accepted publickey"),
        ("/alerts", "Alerts"),
        ("/alerts/silences", "Silences"),
        ("/alerts/silences/new", "New silence"),
        ("/maintenance", "Maintenance windows"),
        ("/notifications", "Notifications"),
        ("/audit", "Audit log"),
        ("/users", "admin"),
        ("/tokens", "Tokens"),
        ("/secrets", "Secrets"),
        ("/settings", "environment FLEETDECK_DATA_DIR"),
        ("/no/such/page", "Page not found"),
    ]


def assert_fits(page: Page, width: int, what: str) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{what}: {scroll} px wide on a {width} px screen"
    wide = page.evaluate("""(w) => Array.from(document.querySelectorAll('body *')).filter(e => {
        const r = e.getBoundingClientRect();
        if (r.width === 0 || r.right <= w + 0.5) return false;
        for (let p = e.parentElement; p; p = p.parentElement) {  // inside a scroller is fine
            const o = getComputedStyle(p).overflowX;
            if (o === 'auto' || o === 'scroll' || o === 'hidden') return false;
        }
        return true; }).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)""", width)
    assert wide == [], f"{what}: elements past the right edge: {wide}"


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("screen", ["laptop", "phone"])
def test_every_page_fits_and_loads_cleanly(console, browser, layout_host, screen, theme):  # noqa: ANN001
    viewport = VIEWPORTS[screen]
    context = browser.new_context(viewport=viewport, color_scheme=theme)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        errors = PageErrors(page)
        page.goto(console.url + "/login")
        assert page.evaluate("document.documentElement.dataset.theme") == theme
        assert_fits(page, viewport["width"], "/login")
        page.fill("#username", console.admin_user)
        page.fill("#password", console.admin_password)
        page.click("#login-submit")
        page.wait_for_url(console.url + "/")
        for path, text in pages(layout_host):
            page.goto(console.url + path)
            expect(page.locator("main")).to_contain_text(text)
            if path.startswith("/hosts/"):
                page.wait_for_function("() => Number(document.querySelector('#chart-load').dataset.points) > 0")
            assert page.evaluate("document.documentElement.dataset.theme") == theme
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[theme], path
            assert_fits(page, viewport["width"], path)
            if path == "/no/such/page":
                errors.console.clear()  # the browser logs the page's own 404
            errors.assert_clean()
        # On the phone the links fold into a menu that opens and leads on.
        nav_links = page.locator(".nav-links").first
        if screen == "phone":
            expect(nav_links).to_be_hidden()
            page.click("#nav-toggle")
            expect(page.locator("#nav-toggle")).to_have_attribute("aria-expanded", "true")
            expect(nav_links).to_be_visible()
            assert_fits(page, viewport["width"], "open menu")
            page.click('.nav-links a[href="/explore"]')
            page.wait_for_url(console.url + "/explore")
            expect(page.locator(".nav-links").first).to_be_hidden()
        else:
            expect(page.locator("#nav-toggle")).to_be_hidden()
            expect(nav_links).to_be_visible()
        errors.assert_clean()
    finally:
        context.close()


def test_overview_names_the_fullest_mount(console, page, layout_host):  # noqa: ANN001
    log_in(page, console)
    row = page.locator(f'.host-card[data-host="{layout_host}"] .metric-row').nth(2)
    expect(row.locator(".metric-label")).to_have_text("Disk /")
    expect(row.locator(".metric-value")).to_have_text("62 %")  # 38 of 100 GiB free


def test_theme_and_time_zone_switches_persist_across_pages(console, page, layout_host):  # noqa: ANN001
    errors = PageErrors(page)
    log_in(page, console)
    page.emulate_media(color_scheme="dark")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.click("#theme-switch")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND["light"]

    # The audit log's times: local by default, UTC after the switch; both in one format.
    page.goto(console.url + "/audit")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"  # kept across pages
    first = page.locator("#audit-table time").first
    ts = int(float(first.get_attribute("data-ts")))
    local = page.evaluate("(t) => { const d = new Date(t * 1000), p = n => String(n).padStart(2, '0');"
                          " return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' '"
                          " + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()); }", ts)
    expect(first).to_have_text(local)
    page.click("#tz-switch")
    expect(first).to_have_text(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)))

    # The logs page and the host chart legend use the same format and zone.
    page.goto(f"{console.url}/logs?host={layout_host}")
    expect(page.locator(".log-ts").first).to_contain_text(" UTC")
    page.goto(f"{console.url}/hosts/{layout_host}")
    page.wait_for_function("() => document.querySelector('#host-last-seen').title.endsWith(' UTC')")
    page.click("#tz-switch")
    page.wait_for_function("() => !document.querySelector('#tz-switch').textContent.includes('UTC')")
    page.click("#theme-switch")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    errors.assert_clean()
