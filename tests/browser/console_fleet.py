"""The console of one instance of a fleet, in a real Chromium: it lists
every instance of the fleet, and the etcd state, from GET /v1/cluster.

Run by the `fleet` end-to-end test:

    python console_fleet.py CONSOLE_URL NAME [NAME ...]

It prints `listed` once a row of each named instance shows, and exits 0;
otherwise it exits 1 saying why.
"""

import os
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")


def main() -> int:
    url, names = sys.argv[1], sys.argv[2:]
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        for name in names:
            row = page.locator(f'tr[id="member-{name}"]')
            row.wait_for(timeout=10_000)
            row.locator("text=current").wait_for(timeout=10_000)
        meta = page.locator("#fleet-meta").text_content()
        if "etcd answers" not in meta:
            print(f"the fleet's line does not say etcd answers: {meta}", flush=True)
            return 1
        browser.close()
    if errors:
        print(f"page errors: {errors}", flush=True)
        return 1
    print("listed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
