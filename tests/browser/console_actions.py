"""The console's actions in a real Chromium: a viewer's page has no action
buttons; an operator drains an endpoint from the page (confirming it), an
action the API refuses shows the API's message, and a plugin's file is
loaded again from the page.

Run by the `console` end-to-end test, which starts the binary (with a
viewer and an operator token) and its upstreams:

    python console_actions.py CONSOLE_URL ENDPOINT_ADDRESS VIEWER_TOKEN OPERATOR_TOKEN

It prints `drained` once the page shows the endpoint draining, waits for a
line on stdin (the test has checked no request reaches it), and exits 0
when every step held; otherwise it exits 1 saying why.
"""

import os
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")


def page_with_token(browser, url, token, errors):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(
        f"sessionStorage.setItem('switchyard-token', {token!r});"
    )
    page = context.new_page()
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    return page


def main() -> int:
    url, address, viewer, operator = sys.argv[1:5]
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        row_selector = f'tr[id="endpoint-web-{address}"]'

        page = page_with_token(browser, url, viewer, errors)
        page.locator(row_selector).wait_for(timeout=10_000)
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('(viewer)')",
            timeout=10_000,
        )
        buttons = page.locator("button:not([type=submit])").count()
        if buttons:
            print(f"a viewer sees {buttons} action buttons", flush=True)
            return 1
        page.context.close()

        page = page_with_token(browser, url, operator, errors)
        row = page.locator(row_selector)
        row.wait_for(timeout=10_000)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Drain {address}").click()
        page.wait_for_function(
            """address => {
                const row = document.getElementById(`endpoint-web-${address}`);
                return row && /draining|drained/.test(row.cells[3].textContent);
            }""",
            arg=address,
            timeout=5_000,
        )
        print("drained", flush=True)
        sys.stdin.readline()

        # A weight of 0 is refused by the API, which says why.
        page.get_by_label(f"weight of {address}").fill("0")
        page.get_by_role("button", name=f"Set weight {address}").click()
        notice = page.locator("#notice")
        notice.filter(has_text="Refused").wait_for(timeout=5_000)
        text = notice.text_content()
        if "weight" not in text:
            print(f"the refusal does not carry the API's message: {text}", flush=True)
            return 1
        print(f"refused: {text}", flush=True)

        # A plugin's actions: its file loaded again from the page.
        page.get_by_role("button", name="Reload rr").click()
        notice.filter(has_text="rr: its file loaded again").wait_for(timeout=5_000)
        print("reloaded", flush=True)
        browser.close()
    if errors:
        # The refused PATCH is logged by the browser as a failed request.
        unexpected = [e for e in errors if "status of 422" not in e]
        if unexpected:
            print(f"console errors: {unexpected}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
