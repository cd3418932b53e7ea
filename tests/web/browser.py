"""The web app as people use it, in a real headless Chromium (Playwright for Python, pointed at
the system's browser). Run by the `web::` integration test against a daemon serving the example
tenant; it exits non-zero, saying what failed, when the app does not behave.

    browser.py BASE_URL SCREENSHOT_DIR
"""

import json
import os
import re
import sys
import time
import urllib.request
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import expect, sync_playwright

BASE, SHOTS = sys.argv[1], sys.argv[2]
ADMIN = "acme-admin-token"
TOKENS = {"dora": "acme-dora-token", "ian": "acme-ian-token", "pat": "acme-pat-token"}
GLOBEX_ADMIN = "globex-admin-token"
CHROMIUM = os.environ.get("FLOWGATE_CHROMIUM", "/usr/bin/chromium")
expect.set_options(timeout=15_000)


def api(method, path, body=None, token=ADMIN):
    request = urllib.request.Request(
        BASE + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def start_purchase(cents, category="it"):
    data = {"amount_cents": cents, "currency": "USD", "category": category, "requester": "alice",
            "title": f"Laptops for the design team ({cents // 100} USD)"}
    return api("POST", "/api/v1/instances", {"workflow": "purchase-request", "data": data})["id"]


def eventually(what, check, seconds=20):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.05)


def run_invoice():
    """One invoice through the accounts-payable process over the API, to its payment."""
    case = api("POST", "/api/v1/instances", {"workflow": "invoice-receipt", "data": {
        "invoice_id": "INV-W1", "vendor": "Globex Office Supply", "amount": 48_000}})["id"]
    steps = [
        ("ap-clerk", {"data": {"po_number": "PO-W1"}}),
        ("ap-clerk", {"outcome": "matched"}),
        ("manager", {"outcome": "approve"}),
        ("treasury", {"data": {"payment_ref": "PAY-W1"}}),
    ]
    for n, (role, body) in enumerate(steps):
        found = {}

        def task_open():
            members = api("GET", f"/api/v1/processes/{case}")["instances"]
            if len(members) <= n:
                return False
            prefix = members[n]["id"] + "."
            tasks = [t for t in api("GET", f"/api/v1/tasks?role={role}")["tasks"] if t["id"].startswith(prefix)]
            found["task"] = tasks[0]["id"] if tasks else None
            return found["task"] is not None

        eventually(f"the {role} task of workflow {n + 1}", task_open)
        body = dict(body, by={"id": f"{role}-1", "roles": [role]})
        api("POST", f"/api/v1/tasks/{found['task']}/complete", body)
        if n == 0:
            api("POST", "/api/v1/messages", {"id": "wh-W1", "name": "goods-received",
                                             "correlation": "PO-W1", "data": {"received_qty": 5}})
    eventually("the case to end", lambda: not api("GET", f"/api/v1/processes/{case}")["running"])
    return case


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def sign_in(browser, who, token=None, javascript=True, phone=False):
    options = {"java_script_enabled": javascript, "timezone_id": "America/New_York"}
    if phone:
        options.update(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context = browser.new_context(**options)
    page = context.new_page()
    page.goto(BASE + "/inbox")
    expect(page).to_have_url(re.compile(r"/login\?next=/inbox$"))
    page.get_by_label("Access token").fill(token or TOKENS[who])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    return page


def task_row(page, instance):
    return page.locator(f'.task-row a[href^="/tasks/{instance}."]')


def main():
    os.makedirs(SHOTS, exist_ok=True)
    instance = start_purchase(1_140_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

        # A wrong token is refused on the sign-in page, with the reason.
        page = browser.new_page()
        page.goto(BASE + "/login")
        shot(page, "01-sign-in")
        page.get_by_label("Access token").fill("not-a-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("not valid")

        # The director's inbox shows the request with what it is; she approves from her phone.
        dora = sign_in(browser, "dora", phone=True)
        row = task_row(dora, instance)
        expect(row).to_have_count(1)
        expect(row).to_contain_text("Laptops for the design team")
        expect(row).to_contain_text("Purchase")
        shot(dora, "02-inbox-phone")
        row.click()
        expect(dora.get_by_role("heading", level=1)).to_be_visible()
        expect(dora.locator("dl.data")).to_contain_text("11,400.00 USD")
        shot(dora, "03-task-phone")
        dora.get_by_label("Comment").fill("Within the design budget")
        dora.get_by_role("button", name="Approve").click()
        expect(dora).to_have_url(re.compile(r"/inbox\?done="))
        expect(dora.get_by_role("status")).to_contain_text("completed")
        expect(task_row(dora, instance)).to_have_count(0)

        # A request started from its form: the page checks the amount, the server keeps it exactly.
        dora.goto(BASE + "/start")
        dora.get_by_role("link", name=re.compile("Purchase request")).click()
        dora.get_by_label("Title").fill("Monitor arms")
        dora.get_by_label("Amount").fill("249.5x")
        dora.get_by_label("Currency").select_option("USD")
        dora.get_by_label("Category").fill("office")
        dora.get_by_label("Requester").fill("dora")
        dora.get_by_role("button", name="Start").click()
        expect(dora.locator("#e-amount_cents")).to_have_text("Amount must be an amount like 1250.50.")
        dora.get_by_label("Amount").fill("249.50")
        shot(dora, "03b-start-phone")
        dora.get_by_role("button", name="Start").click()
        expect(dora.get_by_role("status")).to_contain_text("Started")
        expect(dora.locator("dl.data").last).to_contain_text("249.50 USD")
        started = dora.url.split("/instances/")[1].split("?")[0]
        stored = api("GET", f"/api/v1/instances/{started}")["instance"]["data"]
        assert stored["amount_cents"] == 24950, stored

        # The inbox refreshes by itself when a task arrives.
        dora.goto(BASE + "/inbox")
        second = start_purchase(900_000, "office")
        expect(task_row(dora, second)).to_have_count(1)

        # Times read in the zone the reader's token names (Ian's says Tokyo), or else in the
        # browser's (these browsers say New York).
        ian = sign_in(browser, "ian")
        opened = ian.locator(f'.task-row:has(a[href^="/tasks/{instance}."]) time[data-local]').first
        expect(opened).to_have_attribute("title", re.compile(r"\(Asia/Tokyo\)$"))
        tokyo = datetime.fromisoformat(opened.get_attribute("datetime").replace("Z", "+00:00"))
        tokyo = tokyo.astimezone(ZoneInfo("Asia/Tokyo"))
        hour = tokyo.hour % 12 or 12
        ampm = "AM" if tokyo.hour < 12 else "PM"
        expect(opened).to_have_text(re.compile(
            rf"^{tokyo:%b} {tokyo.day}, {tokyo.year}, {hour}:{tokyo:%M}\s{ampm}$"))
        dora.goto(BASE + f"/instances/{instance}")
        expect(dora.locator("time[data-local]").first).to_have_attribute(
            "title", re.compile(r"\(America/New_York\)$"))

        # Another role's task is refused in the UI, as in the API.
        task_row(ian, instance).click()
        ian.get_by_role("button", name="Approve").click()
        expect(ian).to_have_url(re.compile(r"/inbox\?done="))
        order = api("GET", f"/api/v1/instances/{instance}")["instance"]
        order_task = next(t["id"] for t in order["tasks"].values() if t["status"] == "open")
        answer = dora.goto(BASE + f"/tasks/{order_task}")
        assert answer.status == 403, f"dora opened procurement's task: {answer.status}"
        expect(dora.get_by_role("heading", level=1)).to_have_text("Not yours to open")

        # Procurement fills the order form: the page checks it before sending...
        pat = sign_in(browser, "pat")
        pat.goto(BASE + f"/tasks/{order_task}")
        shot(pat, "04-task-form")
        pat.get_by_role("button", name="Complete").click()
        expect(pat.locator("#e-po_number")).to_have_text("Po number is required.")
        expect(pat).to_have_url(re.compile(rf"/tasks/{re.escape(order_task)}$"))
        # ...and without the script, the server's own message is shown by the field.
        bare = sign_in(browser, "pat", javascript=False)
        bare.goto(BASE + f"/tasks/{order_task}")
        bare.get_by_role("button", name="Complete").click()
        expect(bare.locator("#e-po_number")).to_have_text("Is required")
        shot(bare, "05-server-message")
        pat.get_by_label("Po number").fill("PO-2026-0042")
        pat.get_by_role("button", name="Complete").click()
        expect(pat).to_have_url(re.compile(r"/inbox\?done="))
        expect(task_row(pat, instance)).to_have_count(0)
        # The task, opened again, says it is done rather than failing.
        pat.goto(BASE + f"/tasks/{order_task}")
        expect(pat.get_by_role("status")).to_contain_text("pat completed this task")

        # The operator sees the instance's timeline and its diagram with the way it went.
        ops = sign_in(browser, "admin", token=ADMIN)
        ops.goto(BASE + f"/instances/{instance}")
        expect(ops.locator(".timeline")).to_contain_text("Within the design budget")
        expect(ops.locator(".timeline")).to_contain_text("Ended: completed")
        expect(ops.locator(".diagram svg .step.done")).not_to_have_count(0)
        expect(ops.locator(".diagram svg .edge.taken")).not_to_have_count(0)
        # What it keeps in the store, so nobody learns of a history's size from a cap.
        expect(ops.locator(".page-head .facts")).to_contain_text(re.compile(r"\d+ events, [\d.]+ KB stored"))
        shot(ops, "06-instance")

        # A policy that refuses its input stops the step: the operator retries it from the page.
        broken = start_purchase(-100, "office")
        # The policy runs in the background: wait until its refusal is an incident.
        eventually("the incident is raised",
                   lambda: any(i["instance"] == broken for i in api("GET", "/api/v1/incidents")))
        ops.goto(BASE + "/incidents")
        expect(ops.locator(f'a[href="/instances/{broken}"]')).to_have_count(1)
        shot(ops, "07-incidents")
        ops.locator(f'a[href="/instances/{broken}"]').click()
        expect(ops.locator(".diagram svg .step.failed")).to_have_count(1)
        shot(ops, "08-incident")
        ops.get_by_label("Reason").first.fill("Asked the requester to fix the amount")
        ops.get_by_role("button", name="Retry the step").click()
        expect(ops.locator(".timeline")).to_contain_text("resolved: retry")
        expect(ops.locator(".timeline")).to_contain_text("Asked the requester to fix the amount")

        # The operator pauses a request from its page: its approval cannot be given until it is
        # resumed, the page says who paused it and why, and the timeline keeps both.
        held = start_purchase(1_140_000)
        eventually("its approval opens", lambda: any(
            t["status"] == "open" for t in api("GET", f"/api/v1/instances/{held}")["instance"]["tasks"].values()))
        ops.goto(BASE + f"/instances/{held}")
        ops.locator("#pause-reason").fill("Vendor under review by procurement")
        ops.get_by_role("button", name="Pause this instance").click()
        expect(ops.locator(".paused-card")).to_contain_text("Vendor under review by procurement")
        expect(ops.locator("h1 .status.paused")).to_have_count(1)
        shot(ops, "12-paused")
        task = next(t for t in api("GET", f"/api/v1/instances/{held}")["instance"]["tasks"].values()
                    if t["status"] == "open")
        dora.goto(BASE + f"/tasks/{task['id']}")
        expect(dora.get_by_role("status")).to_contain_text("is paused (Vendor under review by procurement)")
        expect(dora.get_by_role("button", name="Approve")).to_have_count(0)
        shot(dora, "13-task-paused-phone")
        ops.locator("#resume-reason").fill("Vendor cleared")
        ops.get_by_role("button", name="Resume").click()
        expect(ops.locator(".paused-card")).to_have_count(0)
        expect(ops.locator(".timeline")).to_contain_text("Paused")
        expect(ops.locator(".timeline")).to_contain_text("Vendor cleared")
        dora.reload()
        expect(dora.get_by_role("button", name="Approve")).to_have_count(1)

        # Workflows: the source and diagram of each version, and a draft checked in place.
        ops.goto(BASE + "/definitions")
        ops.get_by_role("link", name="Purchase request").click()
        expect(ops.locator(".diagram svg .step")).to_have_count(4)
        draft = ops.get_by_label("Draft (TOML)")
        draft.fill(draft.input_value().replace('next = "ordered"', 'next = "shipped"'))
        ops.get_by_role("button", name="Check", exact=True).click()
        problems = ops.locator("ul.problems")
        expect(problems).to_contain_text("unknown step `shipped`")
        expect(problems).to_contain_text("line ")
        shot(ops, "09-draft-problems")
        # Plugins: versions with their hashes, and the running instances pinned to them.
        ops.goto(BASE + "/plugins")
        purchase = ops.locator("section", has=ops.get_by_role("heading", name="purchase-approval"))
        expect(purchase).to_contain_text("approval-policy")
        expect(purchase.locator("tbody tr").first).to_contain_text("current")
        shot(ops, "10-plugins")
        # Reports: the finished request's cycle time, and where its work waited.
        ops.goto(BASE + "/reports/purchase-request?range=1d")
        expect(ops.locator("#cycle-h + h3")).to_contain_text("completed")
        expect(ops.locator(".steps-table")).to_contain_text("Place the order")
        shot(ops, "11-report")
        # The accounts-payable process, end to end: one invoice paid across four workflows.
        run_invoice()
        ops.get_by_role("link", name="Accounts payable").click()
        expect(ops.locator("h1")).to_contain_text("Accounts payable")
        expect(ops.locator(".tile", has_text="cases ended").locator(".tile-value")).to_have_text("1")
        expect(ops.locator(".steps-table")).to_contain_text("Wait for the goods receipt")
        expect(ops.locator(".steps-table")).to_contain_text("Handing on to Invoice matching")
        expect(ops.locator("#outcomes-h + ul")).to_contain_text("completed in Invoice payment: 1")
        expect(ops.locator("#cost-h ~ dl")).to_contain_text("EUR")
        # Handoffs are listed in the order a case goes through the workflows.
        expect(ops.locator("#handoffs-h + p + ul li").first).to_contain_text("Invoice receipt → Invoice matching")
        shot(ops, "14-process-report")

        # Another tenant's administrator finds nothing of acme's.
        globex = sign_in(browser, "globex", token=GLOBEX_ADMIN)
        for path in (f"/instances/{instance}", f"/tasks/{order_task}"):
            answer = globex.goto(BASE + path)
            assert answer.status == 404, f"globex opened {path}: {answer.status}"

        # Signing out ends the session: its cookie no longer opens a page.
        dora.goto(BASE + "/inbox")
        dora.get_by_role("button", name="Sign out").click()
        expect(dora).to_have_url(re.compile(r"/login$"))
        dora.goto(BASE + "/inbox")
        expect(dora).to_have_url(re.compile(r"/login\?next="))
        browser.close()
    print("web app: every check passed")


if __name__ == "__main__":
    main()
