"""Every page on a laptop (1440×900) and a phone (390×844), in the light and the dark
theme, in English and in Simplified Chinese, in a real headless Chromium against a real
console: nothing wider than the screen, no console errors, the page's own text there,
and on a Chinese page no English word left outside the data it shows; the phone's menu;
the theme and time-zone switches, kept across pages.

The theme follows the browser's prefers-color-scheme (Playwright's ``color_scheme``)
until the switch is used; the pages' colours come from CSS custom properties of :root.
The language follows the browser's (Playwright's ``locale``: Accept-Language and
navigator.language) until the switch is used.
"""
from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.browser.playwright_api import Page, expect
from tests.browser.test_dashboard import PageErrors, history, host_metrics, log_in, push_ok
from tests.harness import ConsoleHarness, wait_for

VIEWPORTS = {"laptop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
BACKGROUND = {"dark": "rgb(17, 18, 23)", "light": "rgb(244, 245, 245)"}  # --bg of each theme
LOCALES = {"en": "en-US", "zh-CN": "zh-CN"}
APP = "app-" + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """A console of its own with one app, so that the deploy pages have a deploy to show:
    its Docker engine is a socket that does not exist, so the deploy fails at once."""
    apps = {APP: {"hosts": ["web-1"], "timeout": 30,
                  "target": {"image": "example/app", "engine": "unix:///nonexistent/docker.sock"}}}
    harness = ConsoleHarness(tmp_path_factory.mktemp("layouts"), apps=apps).start()
    yield harness
    harness.close()


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


@pytest.fixture(scope="module")
def failed_deploy(console) -> int:  # noqa: ANN001
    resp = console.request("POST", f"/api/v1/apps/{APP}/deploys", {"version": "1.0", "reason": "r-1"},
                           token=console.api_token("deployer", "layouts-1"))
    assert resp.status == 202, resp.body
    deploy_id = resp.json()["id"]

    def failed() -> bool:
        return console.request("GET", f"/api/v1/deploys/{deploy_id}",
                               token=console.api_token("viewer", "layouts-2")).json()["state"] == "failed"

    wait_for(failed, 60, "the deploy to an engine that does not exist to fail")
    return deploy_id


def pages(host: str, deploy_id: int) -> list[tuple[str, str, str, str]]:
    """Every page that renders HTML (console/app.py ROUTES and the 404 page): (path, English
    text, Chinese text of the template, Chinese text written by the page's script)."""
    return [
        ("/", host, "主机", "台主机"),  # h1 "Hosts"; the script's "N hosts"
        (f"/hosts/{host}", "Filesystems", "文件系统", "15 分钟"),  # the load chart's legend: "15 min"
        ("/hosts/no-such-host-1", "no host named 'no-such-host-1'", "没有名为 'no-such-host-1' 的主机", "返回概览"),
        ("/explore?query=node_load1", "1 series", "执行查询", "1 条序列"),
        ("/deploys", "Deploys", "部署", "失败"),  # the failed deploy's state from deploys.js
        (f"/deploys/{deploy_id}", f"deploy of {APP} to 1.0", f"{APP} 的部署，目标版本 1.0", "失败"),
        (f"/logs?host={host}", "Accepted publickey", "日志", "1 行"),  # "1 line(s)" from logs.js
        ("/alerts", "Alerts", "触发中和待定", "未触发"),  # a rule's state "inactive" from alerts.js
        # the health line rule.js writes ("… · evaluated …" or "… · not evaluated yet"); not the
        # rule's state: the layout host stops reporting, so HostDown may be pending by now
        ("/alerts/rules/fleetdeck-host/HostDown", "HostDown", "表达式", "评估"),
        ("/alerts/silences", "Silences", "新建静默", "没有生效中或待生效的静默"),
        ("/alerts/silences/new", "New silence", "创建静默", "创建静默"),
        ("/maintenance", "Maintenance windows", "维护窗口", "没有维护窗口"),  # from maintenance.js
        ("/notifications", "Notifications", "最近 24 小时", "通知"),
        ("/audit", "Audit log", "审计日志", "审计日志"),
        ("/users", "admin", "新建用户", "有效"),  # the admin row's "active"
        ("/tokens", "Tokens", "新建令牌", "代理"),  # the agent token's kind
        ("/secrets", "Secrets", "添加或替换密钥", "没有密钥"),
        ("/settings", "environment FLEETDECK_DATA_DIR", "当前生效的配置", "环境变量 FLEETDECK_DATA_DIR"),
        ("/no/such/page", "Page not found", "页面不存在", "返回概览"),
    ]


# Elements that hold data (names, values, label pairs, log lines, series, text a rule file
# wrote, the values inside a deploy's step log: names, numbers, another program's output,
# marked translate="no"), shown as they are in every language.
DATA = ", ".join(["script", "style", "code", "pre", "kbd", "samp", ".mono", '[translate="no"]', ".label-chip",
                  ".log-line", ".series-name", "#explore-chart .u-label", ".user-name", ".role-badge", ".host-name",
                  ".rule-link", "#rule-annotations", "#rule-chart .u-label", "#deploy-log .deploy-step", "#steps-table td:first-child",
                  "#settings-table td:not(:last-child)", "#sections-table td:first-child", "#settings-file"])
# Names that are the same in both languages: the product, units, protocols, products.
NAMES = {"Fleetdeck", "English", "UTC", "CPU", "PSI", "API", "ID", "SSH", "PromQL", "Prometheus", "Grafana",
         "Docker", "docker", "Webhook", "kubeconfig", "inode", "systemd", "journal",
         "admin", "deployer", "viewer", "test"}  # role names (as the CLI takes them); the agent's version
# Per page: words of the data the fixture pushed, examples of query syntax in
# placeholders, and section titles of the (English) docs the pages point to.
PAGE_WORDS = {
    "/hosts/": {"idle", "iowait", "softirq", "system", "user", "nice", "irq", "steal", "lo", "some", "full"},
    "/explore": {"device", "host", "lo", "mode", "rate"},
    "/logs": {"connection", "refused"},
    "/alerts": {"critical", "instance", "severity"},
    "/alerts/rules/": {"critical", "severity"},
    "/alerts/silences": {"Silences"},
    "/alerts/silences/new": {"alertname"},  # a label name as the placeholder
    "/maintenance": {"Maintenance", "windows"},
    "/settings": {"console"},
}

ENGLISH_WORDS = """([data, allowed]) => {
  const split = /[\\s，。；：、（）()“”"',;!?？！=\\[\\]{}<>·…→|]+/, found = new Set();
  const add = (text) => { for (const w of text.split(split)) {
    if (/^[A-Za-z]{2,}$/.test(w) && !/[a-z][A-Z]/.test(w) && !allowed.includes(w)) found.add(w); } };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walker.nextNode());) {
    const p = n.parentElement;
    if (p && !p.closest(data) && p.getClientRects().length) add(n.textContent);
  }
  for (const e of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
    if (e.closest(data) || !e.getClientRects().length) continue;
    for (const a of ['placeholder', 'title', 'aria-label']) add(e.getAttribute(a) || '');
  }
  return Array.from(found).sort(); }"""


def english_words(page: Page, path: str) -> list[str]:
    """Words of English (2+ Latin letters, not CamelCase names such as rule names) on the
    page outside :data:`DATA`, its titles, placeholders and labels, but the allowed ones."""
    allowed = set(NAMES)
    for prefix, words in PAGE_WORDS.items():
        if path.startswith(prefix):
            allowed |= words
    return page.evaluate(ENGLISH_WORDS, [DATA, sorted(allowed)])


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


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("screen", ["laptop", "phone"])
def test_every_page_fits_and_loads_cleanly(console, browser, layout_host, failed_deploy, screen, theme, lang):  # noqa: ANN001
    viewport = VIEWPORTS[screen]
    zh = lang == "zh-CN"
    context = browser.new_context(viewport=viewport, color_scheme=theme, locale=LOCALES[lang])
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        errors = PageErrors(page)
        page.goto(console.url + "/login")
        assert page.evaluate("document.documentElement.dataset.theme") == theme
        assert page.evaluate("document.documentElement.lang") == lang
        expect(page.locator("#login-title")).to_have_text("登录 Fleetdeck" if zh else "Log in to Fleetdeck")
        assert_fits(page, viewport["width"], "/login")
        # A refused login's message comes from the handler, in the page's language too.
        page.fill("#username", console.admin_user)
        page.fill("#password", "not-" + console.admin_password)
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_have_text("用户名或密码错误。" if zh else "Wrong user name or password.")
        if zh:
            assert english_words(page, "/login") == []
        errors.console.clear()  # the browser logs the 401 of the refused login
        log_in(page, console)
        for path, english, template_text, script_text in pages(layout_host, failed_deploy):
            page.goto(console.url + path)
            main = page.locator("main")
            for text in ((template_text, script_text) if zh else (english,)):
                expect(main).to_contain_text(text)
            if path.startswith("/hosts/layout-"):
                page.wait_for_function("() => Number(document.querySelector('#chart-load').dataset.points) > 0")
            assert page.evaluate("document.documentElement.lang") == lang, path
            expect(page.locator("#lang-switch")).to_have_text("English" if zh else "中文")
            assert page.evaluate("document.documentElement.dataset.theme") == theme
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[theme], path
            assert_fits(page, viewport["width"], path)
            if zh:
                assert english_words(page, path) == [], path
            if path in ("/no/such/page", "/hosts/no-such-host-1"):
                errors.console.clear()  # the browser logs the page's own 404
            errors.assert_clean()
        # Times in the language's form of Intl.DateTimeFormat, in the top bar's zone.
        page.goto(console.url + "/audit")
        first = page.locator("#audit-table time").first
        expect(first).to_have_text(re.compile(r"^\d{4}([/-])\d{2}\1\d{2} \d{2}:\d{2}:\d{2}$"))
        ts = int(float(first.get_attribute("data-ts") or 0))
        # On the phone the links fold into a menu that opens and leads on.
        nav_links = page.locator(".nav-links").first
        if screen == "phone":
            expect(nav_links).to_be_hidden()
            page.click("#nav-toggle")
            expect(page.locator("#nav-toggle")).to_have_attribute("aria-expanded", "true")
            expect(nav_links).to_be_visible()
            expect(page.locator("#lang-switch")).to_be_visible()  # the switches are in the folded menu
            assert_fits(page, viewport["width"], "open menu")
        else:
            expect(page.locator("#nav-toggle")).to_be_hidden()
            expect(nav_links).to_be_visible()
            expect(nav_links).to_contain_text("概览" if zh else "Overview")
        page.click("#tz-switch")
        expect(first).to_have_text(time.strftime("%Y/%m/%d %H:%M:%S UTC" if zh else "%Y-%m-%d %H:%M:%S UTC",
                                                 time.gmtime(ts)))
        page.click("#tz-switch")  # back to local time: the next context starts afresh anyway
        if screen == "phone":
            page.click('.nav-links a[href="/explore"]')
            page.wait_for_url(console.url + "/explore")
            expect(page.locator(".nav-links").first).to_be_hidden()
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


SPLIT_WORDS = """(selector) => {
  const split = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let n; (n = walker.nextNode());) {
      for (const m of n.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(n, m.index);
        range.setEnd(n, m.index + m[0].length);
        const tops = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
        if (tops.size > 1) split.push(m[0]);
      }
    }
  }
  return split; }"""


@pytest.mark.parametrize("screen", ["laptop", "phone"])
def test_audit_table_never_breaks_a_token(console, browser, screen):  # noqa: ANN001
    """Actors, actions and targets are tokens (``token.create``, ``user:admin``, a long
    host name): each stays on one line; a table wider than a phone scrolls instead."""
    host = "audit-wrap-" + uuid.uuid4().hex + "-" + uuid.uuid4().hex[:12]
    resp = console.request("POST", "/api/v1/tokens", {"kind": "agent", "host": host},
                           token=console.api_token("admin", "audit-wrap-1"))  # audited: token.create
    assert resp.status in (200, 201), resp.body
    context = browser.new_context(viewport=VIEWPORTS[screen])
    try:
        page = context.new_page()
        log_in(page, console)
        page.goto(console.url + "/audit")
        expect(page.locator("#audit-table")).to_contain_text(host)
        cells = "#audit-table tbody td.audit-actor, #audit-table tbody td.audit-action, " \
                "#audit-table tbody td.audit-target, #audit-table tbody td.audit-source"
        assert page.locator(cells).count() >= 8
        assert page.evaluate(SPLIT_WORDS, cells) == []
        assert_fits(page, VIEWPORTS[screen]["width"], "/audit")
    finally:
        context.close()


def test_a_log_line_wraps_across_the_whole_phone_screen(console, browser, layout_host):  # noqa: ANN001
    """On a 390 px phone the text of a log line takes the whole width under its time,
    host and level, so a 200-character line is a few lines high, not a narrow column."""
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    try:
        page = context.new_page()
        log_in(page, console)
        page.goto(f"{console.url}/logs?host={layout_host}")
        line = page.locator(".log-line").first
        expect(line).to_contain_text("Accepted publickey")
        box = line.bounding_box()
        text = line.locator(".log-text").bounding_box()
        assert text["width"] >= 0.9 * box["width"], (text, box)
        chars = len(line.locator(".log-text").inner_text())
        per_line = page.evaluate("""() => { const s = document.createElement('span');
            s.textContent = 'x'.repeat(100); s.style.whiteSpace = 'nowrap'; document.querySelector('.log-text').appendChild(s);
            const w = s.getBoundingClientRect().width / 100; s.remove(); return w; }""")
        line_height = float(page.evaluate("parseFloat(getComputedStyle(document.querySelector('.log-text')).lineHeight)"
                                          " || 1.4 * parseFloat(getComputedStyle(document.querySelector('.log-text')).fontSize)"))
        rows = chars * per_line / text["width"] + 2  # the text's rows, one more for wrapping at word ends
        assert text["height"] <= rows * line_height + 1, (text, chars, per_line, line_height)
        assert box["height"] <= text["height"] + 3 * line_height, (box, text)  # the meta row above it
    finally:
        context.close()


def test_deploy_and_token_times_follow_the_time_zone_switch(console, page, failed_deploy):  # noqa: ANN001
    """The deploys list, a deploy's step log and the tokens page write times as every
    other page does (not the browser's own locale format), and follow the switch."""
    errors = PageErrors(page)
    log_in(page, console)
    deploy = console.request("GET", f"/api/v1/deploys/{failed_deploy}",
                             token=console.api_token("viewer", "layouts-3")).json()
    events = console.request("GET", f"/api/v1/deploys/{failed_deploy}/events",
                             token=console.api_token("viewer", "layouts-4")).json()["events"]
    local, utc = "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S UTC"
    for path, selector, ts in ((f"/deploys/{failed_deploy}", "#deploy-log li time", events[0]["ts"]),
                               ("/deploys", "#deploys-table time", deploy["created_at"]),
                               ("/tokens", "#tokens-table time", None)):
        page.goto(console.url + path)
        first = page.locator(selector).first
        expect(first).to_be_visible()
        ts = ts if ts is not None else float(first.get_attribute("data-ts") or 0)
        assert abs(float(first.get_attribute("data-ts") or 0) - ts) < 0.001, path
        expect(first).to_have_text(time.strftime(local, time.localtime(ts)))
        page.click("#tz-switch")
        expect(first).to_have_text(time.strftime(utc, time.gmtime(ts)))
        page.click("#tz-switch")  # back to local for the next page
    errors.assert_clean()
