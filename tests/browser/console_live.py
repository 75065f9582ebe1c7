"""The console in a real Chromium: the page loads with no console errors,
shows every endpoint healthy and the pool's traffic charted, and turns an
endpoint's row unhealthy within a second of its upstream being killed,
without a reload.

Run by the `console` end-to-end test, which starts the binary and the
upstreams and speaks to this script over stdin and stdout:

    python console_live.py CONSOLE_URL ENDPOINT_ADDRESS SCREENSHOT_DIR

It prints `ready` once the endpoint shows healthy, waits for a line on
stdin (the upstream has been killed), and exits 0 when the row turned
unhealthy in time; otherwise it exits 1 saying why.
"""

import os
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")
UNHEALTHY_WITHIN_S = 1.0


def main() -> int:
    url, address, screenshots = sys.argv[1], sys.argv[2], sys.argv[3]
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.on(
            "console",
            lambda message: errors.append(message.text)
            if message.type == "error"
            else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_load_state("load")
        # What a first visit costs: bytes over the wire, and the first paint.
        weight = page.evaluate(
            "performance.getEntriesByType('navigation')[0].transferSize"
            " + performance.getEntriesByType('resource')"
            ".reduce((sum, entry) => sum + entry.transferSize, 0)"
        )
        paint = page.evaluate(
            "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0"
        )
        row = page.locator(f'tr[id="endpoint-web-{address}"]')
        row.locator("text=healthy").first.wait_for(timeout=10_000)
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('live')",
            timeout=10_000,
        )
        # The pool's chart has points (traffic runs while this waits).
        page.wait_for_function(
            "traffic.has('web') && traffic.get('web').data[1].filter(v => v > 0).length >= 4",
            timeout=20_000,
        )
        page.screenshot(path=os.path.join(screenshots, "console.png"), full_page=True)
        print("ready", flush=True)

        sys.stdin.readline()
        killed_at = time.monotonic()
        try:
            page.wait_for_function(
                """address => {
                    const row = document.getElementById(`endpoint-web-${address}`);
                    return row && /unhealthy|held out|ejected/.test(row.cells[1].textContent);
                }""",
                arg=address,
                timeout=5_000,
            )
        except Exception as error:  # noqa: BLE001 - reported, then a failing exit
            print(f"the row never turned unhealthy: {error}", flush=True)
            return 1
        took = time.monotonic() - killed_at
        page.screenshot(
            path=os.path.join(screenshots, "console-unhealthy.png"), full_page=True
        )
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)
        page.screenshot(
            path=os.path.join(screenshots, "console-phone.png"), full_page=True
        )
        # At a phone's width the page does not scroll sideways: wide tables
        # scroll within their own box.
        page_width = page.evaluate("document.documentElement.scrollWidth")
        if page_width > 390:
            print(f"at 390 px wide the page is {page_width} px wide", flush=True)
            return 1
        browser.close()
    print(f"unhealthy after {took:.3f} s", flush=True)
    print(f"first load: {weight} bytes, first contentful paint at {paint:.0f} ms", flush=True)
    if errors:
        print(f"console errors: {errors}", flush=True)
        return 1
    if took > UNHEALTHY_WITHIN_S:
        print(f"slower than {UNHEALTHY_WITHIN_S} s", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
