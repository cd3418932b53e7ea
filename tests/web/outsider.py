"""Someone outside the organization completes their task from the link they were emailed, in a
real headless Chromium; the link does not open it again, nor any other page.

    outsider.py BASE_URL LINK SCREENSHOT_DIR
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

BASE, LINK, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
CHROMIUM = os.environ.get("FLOWGATE_CHROMIUM", "/usr/bin/chromium")
expect.set_options(timeout=15_000)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        client = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
        client.goto(LINK)
        expect(client.get_by_role("heading", level=1)).to_have_text("Sign the contract")
        client.screenshot(path=os.path.join(SHOTS, "20-link-landing.png"), full_page=True)
        client.get_by_role("button", name="Open the task").click()
        expect(client).to_have_url(re.compile(r"/tasks/[^/]+$"))
        # Only the task: no inbox, no instance data, no history.
        expect(client.get_by_role("navigation", name="Main")).to_have_count(0)
        expect(client.get_by_role("heading", name="History")).to_have_count(0)
        client.get_by_label("Signed by").fill("Joan Client")
        client.get_by_label("Accept terms").check()
        client.screenshot(path=os.path.join(SHOTS, "21-outsider-task.png"), full_page=True)
        client.get_by_role("button", name="Sign", exact=True).click()
        expect(client.get_by_role("status")).to_contain_text("completed this task")
        answer = client.goto(BASE + "/inbox")
        assert answer.status == 403, f"the link's session opened the inbox: {answer.status}"
        # The link, opened again (here, or by anyone it was forwarded to), opens nothing.
        again = browser.new_page()
        answer = again.goto(LINK)
        assert answer.status == 410, f"the link opened twice: {answer.status}"
        expect(again.get_by_role("heading", level=1)).to_have_text("This is done already")
        browser.close()
    print("outsider: every check passed")


if __name__ == "__main__":
    main()
