"""The console's actions in a real Chromium: a viewer's page has no action
buttons; an operator, with the keyboard only, drains an endpoint from the
page (confirming it); adds an endpoint and removes it (confirming); an
action the API refuses shows the API's message; a plugin's file is loaded
again, and a candidate is put on trial and its rollout aborted, from the
page; the events feed shows what happened.

Run by the `console` end-to-end test, which starts the binary (with a
viewer and an operator token) and its upstreams:

    python console_actions.py CONSOLE_URL ENDPOINT_ADDRESS NEW_ADDRESS \
        VIEWER_TOKEN OPERATOR_TOKEN CANDIDATE_FILE

At each step the test checks through real traffic it prints a word
(`drained`, `added`, `removed`) and waits for a line on stdin. It exits 0
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


def wait_for_row(page, address, present=True):
    page.wait_for_function(
        """([address, present]) =>
            !!document.getElementById(`endpoint-web-${address}`) === present""",
        arg=[address, present],
        timeout=5_000,
    )


def tab_to(page, label, most=200):
    """Presses Tab until the control named `label` has the focus."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == label:
            return
    raise AssertionError(f"{label} is not reached with Tab")


def main() -> int:
    url, address, new_address, viewer, operator, candidate = sys.argv[1:7]
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
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('(operator)')",
            timeout=10_000,
        )
        # With the keyboard only: Tab to the endpoint's Drain, through a
        # redraw of the page (which keeps the focus), and Enter.
        tab_to(page, f"Drain {address}")
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('updated')",
            timeout=5_000,
        )
        page.wait_for_timeout(2_500)
        focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
        if focused != f"Drain {address}":
            print(f"a redraw moved the focus to {focused}", flush=True)
            return 1
        page.once("dialog", lambda dialog: dialog.accept())
        page.keyboard.press("Enter")
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

        # An endpoint added from the pool's form, then removed (confirmed).
        page.get_by_label("address of a new endpoint in web").fill(new_address)
        page.get_by_label("address of a new endpoint in web").press("Enter")
        wait_for_row(page, new_address)
        print("added", flush=True)
        sys.stdin.readline()
        questions = []
        page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
        page.get_by_role("button", name=f"Remove {new_address}").click()
        wait_for_row(page, new_address, present=False)
        if not questions or "in flight finish" not in questions[0]:
            print(f"removing asked no confirmation: {questions}", flush=True)
            return 1
        print("removed", flush=True)
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

        # A rollout started from the page, watched, and aborted.
        page.select_option("#rollout-plugin", "rr")
        page.set_input_files("#rollout-file", candidate)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Start rollout").click()
        notice.filter(has_text="rr: candidate").wait_for(timeout=10_000)
        rollout = page.locator("#rollout-rr")
        rollout.filter(has_text="shadow").wait_for(timeout=5_000)
        print(f"rollout: {notice.text_content()}", flush=True)
        page.get_by_role("button", name="Abort rr").click()
        rollout.filter(has_text="aborted").wait_for(timeout=5_000)
        print("aborted", flush=True)

        # The feed of events has what the page did.
        feed = page.locator("#events")
        feed.filter(has_text="rollout-started").wait_for(timeout=5_000)
        feed.filter(has_text="changed web").wait_for(timeout=5_000)
        print("events shown", flush=True)
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
