#!/usr/bin/env python3
"""End to end in a real browser (headless Chromium through ChromeDriver) with real email (an SMTP server on
loopback writing a Maildir), against a running Tollgate server with its simulated fleet:

1. alice signs in, requests a VM on the form, sees its risk, submits it and takes it to approval;
   bob approves it from his inbox; alice schedules and starts it and watches it execute to completed;
   the VM is in the fleet view, and its page draws a CPU chart.
2. An alert rule fires on a written point: the incident shows on the board.
3. bob's approval email for a second change has a plain-text and an HTML part; its approve link, followed
   in the browser, approves the change; a second use is refused; a link to a change edited since is
   refused, each with a clear page.

Screenshots of every step go to the artifacts folder.

usage: browser_check.py BASE_URL ADMIN_PASSWORD WEBDRIVER_URL MAILDIR ARTIFACTS_DIR
"""
import base64
import email
import email.policy
import mailbox
import os
import re
import sys
import time

from http_json import http

BASE, ADMIN_PASSWORD, DRIVER, MAILDIR, ARTIFACTS = sys.argv[1:6]
PASSWORD = "browser-user-password"
os.makedirs(ARTIFACTS, exist_ok=True)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def api(method, path, body=None, token=None, expect=(200, 201, 204)):
    status, out = http(method, BASE + path, body, token)
    assert status in expect, f"{method} {path}: {status} {out}"
    return out


def until(what, check, seconds=60, every=0.5):
    deadline = time.time() + seconds
    while True:
        try:
            got = check()
        except AssertionError as e:
            # A page that reloads under the check (the change page does when its job ends) is not an answer.
            if "stale element" not in str(e):
                raise
            got = None
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(every)


class Browser:
    """The few W3C WebDriver commands the test needs."""

    def __init__(self):
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--no-first-run", "--disable-extensions"]}}}}
        self.sid = self.cmd("POST", "/session", caps)["sessionId"]
        self.shots = 0

    def cmd(self, method, path, body=None):
        if path != "/session":
            path = f"/session/{self.sid}{path}"
        status, out = http(method, DRIVER + path, body if body is not None else ({} if method == "POST" else None))
        assert status == 200, f"webdriver {method} {path}: {status} {out}"
        return out["value"]

    def go(self, path):
        self.cmd("POST", "/url", {"url": path if path.startswith("http") else BASE + path})

    def find_all(self, css):
        return [e[ELEMENT] for e in self.cmd("POST", "/elements", {"using": "css selector", "value": css})]

    def find(self, css):
        found = until(f"an element {css!r} on {self.url()}", lambda: self.find_all(css), seconds=15)
        return found[0]

    def click(self, css):
        self.cmd("POST", f"/element/{self.find(css)}/click")

    def type(self, css, text):
        el = self.find(css)
        self.cmd("POST", f"/element/{el}/clear")
        self.cmd("POST", f"/element/{el}/value", {"text": text})

    def text(self, css="body"):
        for _ in range(20):
            try:
                return self.cmd("GET", f"/element/{self.find(css)}/text")
            except AssertionError as e:
                if "stale element" not in str(e):
                    raise
                time.sleep(0.25)
        raise AssertionError(f"{css} kept going stale on {self.url()}")

    def url(self):
        return self.cmd("GET", "/url")

    def shot(self, name):
        self.shots += 1
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        path = os.path.join(ARTIFACTS, f"{self.shots:02d}-{name}.png")
        with open(path, "wb") as f:
            f.write(png)

    def sign_in(self, username, password):
        self.go("/login")
        self.type("#username", username)
        self.type("#password", password)
        self.click("#sign-in")
        until(f"{username} signed in", lambda: username in self.text("header"))

    def sign_out(self):
        self.click("form.who button")
        until("the sign-in page", lambda: "/login" in self.url())

    def quit(self):
        self.cmd("DELETE", "")


def main():
    admin = api("POST", "/api/v1/auth/tokens", {"username": "admin", "password": ADMIN_PASSWORD})["token"]
    api("POST", "/api/v1/users", {"username": "alice", "password": PASSWORD, "email": "alice@example.test",
                                  "roles": ["requester", "change-manager", "operator"]}, admin)
    bob = api("POST", "/api/v1/users", {"username": "bob", "password": PASSWORD, "email": "bob@example.test",
                                        "roles": ["approver"]}, admin)
    groups = api("GET", "/api/v1/groups?q=change-approvers", token=admin)["items"]
    group = next(g for g in groups if g["name"] == "change-approvers")
    api("PUT", f"/api/v1/groups/{group['id']}/members/{bob['id']}", token=admin)

    b = Browser()
    try:
        # 1. Request a VM, approve it from the inbox as a second user, watch it run, find it in the fleet.
        b.sign_in("alice", PASSWORD)
        b.shot("alice-inbox")
        b.go("/requests/vm")
        b.type("#name", "web-e2e")
        b.type("#description", "a VM requested in the browser")
        b.shot("request-form")
        b.click("#request-submit")
        until("the draft change page", lambda: "/changes/" in b.url())
        change_url = b.url()
        page = b.text()
        assert "draft" in page and "Risk" in page and "Provision VM web-e2e" in page, page
        b.shot("draft-with-risk")
        for event in ["submit", "assess", "request_approval"]:
            b.click(f"#event-{event}")
            until(f"the change after {event}", lambda: b.find_all(f"#event-{event}") == [])
        assert "awaiting approval" in b.text("#change-state")
        b.shot("awaiting-approval")
        b.sign_out()

        b.sign_in("bob", PASSWORD)
        reference = re.search(r"CHG-\d+", b.text("main")).group(0)
        assert "New VM web-e2e" in b.text("main")
        b.shot("bob-inbox")
        b.click(f"#approval-{reference} button.approve")
        until("the inbox emptied", lambda: "Nothing waits for your vote." in b.text("main"))
        b.shot("bob-approved")
        b.sign_out()

        b.sign_in("alice", PASSWORD)
        b.go(change_url)
        assert "approved" in b.text("#change-state")
        b.click("#event-schedule")
        until("scheduled", lambda: "scheduled" in b.text("#change-state"))
        b.click("#event-start")
        until("implementing", lambda: b.text("#change-state") in ("implementing", "verifying", "completed"))
        b.shot("executing")
        # The page refreshes its progress by itself; it reloads when the job ends.
        until("the change completed", lambda: b.text("#change-state") == "completed", seconds=90)
        assert "Carried out and verified" in b.text("#progress"), b.text("#progress")
        b.shot("completed")

        b.go("/fleet")
        links = until("the VM in the fleet view",
                      lambda: [e for e in b.find_all("a.vm") if b.cmd("GET", f"/element/{e}/text") == "web-e2e"])
        b.shot("fleet")
        b.cmd("POST", f"/element/{links[0]}/click")
        until("the VM's page", lambda: "web-e2e" in b.text("#ci-name"))

        def chart_drawn():
            b.go(b.url())
            return b.find_all("figure.chart.has-data polyline")
        until("the VM's CPU chart to draw", chart_drawn, seconds=90, every=2)
        b.shot("fleet-vm-chart")

        # 2. An alert opens an incident that shows on the board.
        api("POST", "/api/v1/alert-rules", {"name": "e2e board temperature", "measurement": "e2e", "field": "temperature",
                                           "condition": {"kind": "above", "threshold": 50.0, "recovery": 40.0},
                                           "for_secs": 0, "severity": "critical"}, admin)
        line = f"e2e,host=sim-a-01 temperature=90 {time.time_ns()}\n".encode()
        status, out = http("POST", BASE + "/api/v2/write", line, admin, "text/plain")
        assert status == 204, (status, out)

        def on_board():
            b.go("/incidents")
            return "e2e board temperature" in b.text("main")
        until("the alert's incident on the board", on_board, seconds=60, every=1)
        b.shot("incident-board")

        # 3. Email: the approval email to bob, both parts, its links.
        def request_to_approval(title):
            c = api("POST", "/api/v1/changes", {"kind": "normal", "title": title, "window_start": iso(-60),
                                                "window_end": iso(4 * 3600),
                                                "operations": [{"op": "provision", "name": title.replace(" ", "-"),
                                                                "image": "tiny.qcow2", "vcpus": 1, "memory_mib": 1024,
                                                                "disk_gib": 10, "service_id": None, "host_id": None}]},
                    alice_token)
            for event in ["submit", "assess", "request_approval"]:
                api("POST", f"/api/v1/changes/{c['id']}/events", {"event": event}, alice_token)
            return c

        alice_token = api("POST", "/api/v1/auth/tokens", {"username": "alice", "password": PASSWORD})["token"]
        linked = request_to_approval("mail approved")
        message = until(f"the approval email for {linked['reference']}", lambda: mail_about(linked["reference"]), 60)
        assert message["To"].addresses[0].addr_spec == "bob@example.test", message["To"]
        plain = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        assert linked["reference"] in plain and "Risk" in plain, plain
        assert "<a href=" in html and "Approve" in html, html
        approve = re.search(r"Approve: (\S+)", plain).group(1)
        assert approve in html.replace("&amp;", "&") or approve.split("t=")[1] in html, "both parts carry the link"
        b.go(approve)
        assert f"Approve {linked['reference']}?" in b.text("h1"), b.text()
        b.shot("email-link-confirm")
        b.click("#confirm")
        until("the vote recorded", lambda: "You approved" in b.text("h1"))
        b.shot("email-link-approved")
        state = api("GET", f"/api/v1/changes/{linked['id']}", token=admin)["state"]
        assert state == "approved", state
        b.go(approve)
        assert "already been used" in b.text("h1"), b.text()
        b.shot("email-link-used-twice")

        edited = request_to_approval("mail edited")
        message = until(f"the approval email for {edited['reference']}", lambda: mail_about(edited["reference"]), 60)
        approve = re.search(r"Approve: (\S+)", message.get_body(preferencelist=("plain",)).get_content()).group(1)
        body = {"kind": "normal", "title": "mail edited twice", "window_start": iso(-60), "window_end": iso(4 * 3600),
                "operations": edited["operations"], "revision": edited["revision"]}
        api("PUT", f"/api/v1/changes/{edited['id']}", body, alice_token)
        b.go(approve)
        assert "edited after the email was sent" in b.text("h1"), b.text()
        b.shot("email-link-edited-change")
        state = api("GET", f"/api/v1/changes/{edited['id']}", token=admin)["state"]
        assert state == "awaiting_approval", state
    except BaseException:
        try:
            b.shot("failure")
            with open(os.path.join(ARTIFACTS, "failure.html"), "w") as f:
                f.write(b.cmd("GET", "/source"))
        except BaseException:
            pass
        raise
    finally:
        b.quit()
    print(f"browser and email end to end passed; {b.shots} screenshots in {ARTIFACTS}")


def iso(offset_secs):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_secs))


def mail_about(reference):
    if not os.path.isdir(MAILDIR):
        return None
    for key, raw in mailbox.Maildir(MAILDIR, factory=None).items():
        m = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
        if reference in str(m["Subject"]) and "approval" in str(m["Subject"]).lower():
            return m
    return None


if __name__ == "__main__":
    main()
