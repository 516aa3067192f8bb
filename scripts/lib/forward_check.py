"""Forwarding to a real VictoriaMetrics: batches written to Tollgate arrive there, also those written while it
was still down.

    forward_check.py TOLLGATE_BASE ADMIN_PASSWORD VICTORIA_BASE START_VICTORIA_COMMAND...

Writes a batch while VictoriaMetrics is not running yet, starts it (the command, run in the background), writes
another, and waits (at most 60 s) until VictoriaMetrics' export API returns both batches' points.
"""

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

tollgate, password, victoria = sys.argv[1], sys.argv[2], sys.argv[3]
start_victoria = sys.argv[4:]


def request(method, url, token=None, body=None, content_type="application/json"):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, body) as resp:
        return resp.status, resp.read()


_, raw = request("POST", f"{tollgate}/api/v1/auth/tokens",
                 body=json.dumps({"username": "admin", "password": password}).encode())
token = json.loads(raw)["token"]
t0 = int(time.time()) - 60
status, _ = request("POST", f"{tollgate}/api/v2/write?precision=s", token,
                    f"fwd,host=hv-a load=1.5 {t0}\nfwd,host=hv-b load=2.5 {t0}\n".encode(), "text/plain")
assert status == 204, status
victoria_process = subprocess.Popen(start_victoria, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    status, _ = request("POST", f"{tollgate}/api/v2/write?precision=ms", token,
                        f"fwd,host=hv-a load=3.5 {(t0 + 10) * 1000}\n".encode(), "text/plain")
    assert status == 204, status
    want = {("hv-a", t0 * 1000, 1.5), ("hv-b", t0 * 1000, 2.5), ("hv-a", (t0 + 10) * 1000, 3.5)}
    deadline = time.time() + 60
    got = set()
    while time.time() < deadline:
        try:
            request("GET", f"{victoria}/internal/force_flush")
            query = urllib.parse.urlencode({"match[]": 'fwd_load'})
            _, raw = request("GET", f"{victoria}/api/v1/export?{query}")
            got = set()
            for line in raw.decode().splitlines():
                series = json.loads(line)
                for ts, value in zip(series["timestamps"], series["values"]):
                    got.add((series["metric"]["host"], ts, value))
            if want <= got:
                break
        except OSError:
            pass
        time.sleep(1)
    assert want <= got, f"VictoriaMetrics has {sorted(got)}, expected {sorted(want)}"
    _, raw = request("GET", f"{tollgate}/metrics")
    sent = [l for l in raw.decode().splitlines() if l.startswith("tollgate_forward_batches_sent_total ")]
    assert sent and int(sent[0].split()[1]) >= 2, sent
    print("both batches reached VictoriaMetrics, the one written while it was down too; /metrics counts them")
finally:
    victoria_process.terminate()
    victoria_process.wait(timeout=30)
