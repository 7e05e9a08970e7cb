"""Regenerate the screenshots in docs/ from a real console holding 30 minutes of this
machine's host-collector series: ``python -m tests.browser.screenshots [docs]``.

Writes dashboard.png (the host page) and explore.png (the explore page with a PromQL
query), both at 1440 px wide in the dark theme.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from tests.browser.test_host_and_explore import INTERVAL, history, real_samples
from tests.harness import ConsoleHarness, chromium_path


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM_ARGS

    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp)).start()
        try:
            host = "web-1"
            token = console.agent_token(host)
            samples = real_samples()
            last = (int(time.time()) - 5) // INTERVAL * INTERVAL
            times = [last - INTERVAL * k for k in reversed(range(180))]
            for i in range(0, len(times), 10):
                status, body = console.push(host, token, history(samples, [t * 1000 for t in times[i:i + 10]], wobble=True))
                assert status == 200, body
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1440, "height": 1000}, color_scheme="dark").new_page()
                page.goto(console.url + "/login")
                page.fill("#username", console.admin_user)
                page.fill("#password", console.admin_password)
                page.click("#login-submit")
                page.wait_for_url(console.url + "/")
                page.goto(f"{console.url}/hosts/{host}?from=now-30m&to=now")
                page.wait_for_function("() => Number(document.querySelector('#chart-network').dataset.points) > 100")
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / "dashboard.png"))
                query = 'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))'
                page.goto(f"{console.url}/explore?from=now-30m&to=now&query={query}")
                page.wait_for_function("() => Number(document.querySelector('#explore-chart').dataset.points) > 100")
                page.wait_for_timeout(500)
                page.screenshot(path=str(out / "explore.png"))
                browser.close()
        finally:
            console.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
