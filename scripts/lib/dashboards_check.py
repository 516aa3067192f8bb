#!/usr/bin/env python3
"""Checks the Grafana dashboards in dashboards/, then runs every query in them against a real VictoriaMetrics
fed by a test fleet, and asserts each returns data.

The model checks: a title, a uid and a schemaVersion; panel ids unique; every panel, query, template variable
and annotation names its data source through a data-source variable of the dashboard (never a fixed uid); no
query matches a host, VM, cluster, region or instance by a fixed value (only through a variable); the
provisioning files name their keys.

The fleet: a Tollgate server forwarding what agents write to VictoriaMetrics, which also scrapes the server's
/metrics; a real tollgate-agent on this machine (tags region, cluster, host); per-VM points in the format a
hypervisor's agent writes them (measurement vm); and ITIL records made through the API (an incident, a change
awaiting approval, a change scheduled in its open window).

usage: dashboards_check.py BASE_URL ADMIN_PASSWORD VICTORIA_URL AGENT_BINARY WORK_DIR DASHBOARDS_DIR
"""
import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

from http_json import http

BASE, ADMIN_PASSWORD, VICTORIA, AGENT, WORK, DASHBOARDS = sys.argv[1:7]
REGION, CLUSTER, HOST, VM = "test-region", "test-cluster", "test-host-1", "test-vm-1"
FIXED_LABELS = ("host", "vm", "cluster", "region", "instance")


def api(method, path, body=None, token=None):
    status, out = http(method, BASE + path, body, token)
    assert status in (200, 201, 204), f"{method} {path}: {status} {out}"
    return out


def iso(offset_secs):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_secs))


# --- the models --------------------------------------------------------------------------------------------
def panels_of(d):
    for p in d.get("panels", []):
        yield p
        yield from p.get("panels", [])


def check_model(path):
    d = json.load(open(path))
    name = os.path.basename(path)
    problems = []
    for key in ("title", "uid"):
        if not d.get(key):
            problems.append(f"{name}: no {key}")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problems.append(f"{name}: schemaVersion missing or older than 36")
    variables = d.get("templating", {}).get("list", [])
    ds_vars = {v["name"] for v in variables if v.get("type") == "datasource"}
    if not ds_vars:
        problems.append(f"{name}: no data-source variable")

    def check_ds(where, ds):
        uid = (ds or {}).get("uid", "") if isinstance(ds, dict) else ds
        m = re.fullmatch(r"\$\{?(\w+)\}?", uid or "")
        if not m or m.group(1) not in ds_vars:
            problems.append(f"{name}: {where} names data source {ds!r}, not one of the variables {sorted(ds_vars)}")

    ids = [p.get("id") for p in panels_of(d)]
    if len(ids) != len(set(ids)) or None in ids:
        problems.append(f"{name}: panel ids not unique: {ids}")
    exprs = []
    for p in panels_of(d):
        if p.get("type") == "row":
            continue
        check_ds(f"panel {p.get('title')!r}", p.get("datasource"))
        for t in p.get("targets", []):
            check_ds(f"a query of panel {p.get('title')!r}", t.get("datasource", p.get("datasource")))
            exprs.append((f"panel {p.get('title')!r}", t["expr"]))
    for v in variables:
        if v.get("type") == "query":
            check_ds(f"variable {v['name']}", v.get("datasource"))
            exprs.append((f"variable {v['name']}", v["definition"]))
    for a in d.get("annotations", {}).get("list", []):
        check_ds(f"annotation {a.get('name')!r}", a.get("datasource"))
        exprs.append((f"annotation {a.get('name')!r}", a["expr"]))
    for where, expr in exprs:
        for label in FIXED_LABELS:
            for m in re.finditer(rf'\b{label}\s*(=~|!~|=|!=)\s*"([^"]*)"', expr):
                if not m.group(2).startswith("$"):
                    problems.append(f"{name}: {where} matches {label} by a fixed value: {expr}")
    return d, problems


def check_provisioning():
    problems = []
    import yaml  # PyYAML comes with the test tools' virtual environment
    for path in glob.glob(os.path.join(DASHBOARDS, "provisioning", "datasources", "*.yaml")):
        doc = yaml.safe_load(open(path))
        for s in doc.get("datasources", []):
            for key in ("name", "type", "url", "access"):
                if not s.get(key):
                    problems.append(f"{path}: a data source without {key}")
        if not {"prometheus", "influxdb"} <= {s.get("type") for s in doc.get("datasources", [])}:
            problems.append(f"{path}: wants a Prometheus-type and an InfluxDB data source")
    for path in glob.glob(os.path.join(DASHBOARDS, "provisioning", "dashboards", "*.yaml")):
        doc = yaml.safe_load(open(path))
        for p in doc.get("providers", []):
            if p.get("type") != "file" or not p.get("options", {}).get("path"):
                problems.append(f"{path}: a provider that is not a file provider with a path")
    if not glob.glob(os.path.join(DASHBOARDS, "provisioning", "*", "*.yaml")):
        problems.append("no provisioning files")
    return problems


# --- the fleet ---------------------------------------------------------------------------------------------
def feed():
    admin = api("POST", "/api/v1/auth/tokens", {"username": "admin", "password": ADMIN_PASSWORD})["token"]
    api("POST", "/api/v1/users", {"username": "dash-agent", "password": "dash-agent-password", "roles": ["agent"]}, admin)
    agent_token = api("POST", "/api/v1/auth/tokens", {"username": "dash-agent", "password": "dash-agent-password"})["token"]
    agent = subprocess.Popen(
        [AGENT, "--server", BASE, "--interval", "1s", "--queue-dir", os.path.join(WORK, "agent-queue"),
         "--host", HOST, "--cluster", CLUSTER, "--region", REGION],
        env=dict(os.environ, TOLLGATE_AGENT_TOKEN=agent_token), stderr=open(os.path.join(WORK, "agent.log"), "w"))
    # ITIL records: an incident, a change waiting for approval, a standard change scheduled in its open window.
    api("POST", "/api/v1/incidents", {"title": "dashboard check", "impact": "medium", "urgency": "medium"}, admin)
    billing = api("POST", "/api/v1/cis", {"kind": "service", "name": "dash-billing"}, admin)["id"]
    search = api("POST", "/api/v1/cis", {"kind": "service", "name": "dash-search"}, admin)["id"]
    for kind, ci, events in [("normal", billing, ["submit", "assess", "request_approval"]), ("standard", search, ["schedule"])]:
        c = api("POST", "/api/v1/changes", {"kind": kind, "title": f"dashboard {kind}", "ci_ids": [ci],
                                            "window_start": iso(-60), "window_end": iso(3600)}, admin)
        for e in events:
            api("POST", f"/api/v1/changes/{c['id']}/events", {"event": e}, admin)
    return agent, agent_token


def write_vm_points(token, n):
    """One batch of per-VM figures as a hypervisor host's agent writes them (counters growing)."""
    now = time.time_ns()
    tags = f"vm={VM},host={HOST},cluster={CLUSTER},region={REGION}"
    line = (f"vm,{tags} cpu_pct={12 + n % 5}.5,vcpus=2i,balloon_current_kib=4194304i,balloon_rss_kib={2000000 + n * 1000}i,"
            f"block_read_bytes={n * 65536}i,block_write_bytes={n * 131072}i,block_read_reqs={n * 16}i,"
            f"block_write_reqs={n * 32}i,net_rx_bytes={n * 10000}i,net_tx_bytes={n * 5000}i,running=true {now}\n")
    status, out = http("POST", BASE + "/api/v2/write", line.encode(), token, "text/plain")
    assert status == 204, (status, out)


# --- the queries -------------------------------------------------------------------------------------------
VALUES = {"region": REGION, "cluster": CLUSTER, "host": HOST, "vm": VM, "__rate_interval": "1m",
          "__interval": "15s", "__range": "10m"}


def substitute(expr):
    def one(m):
        return VALUES.get(m.group(1) or m.group(2), m.group(0))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def has_data(expr):
    m = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", expr.strip())
    if m:
        query = {"match[]": m.group(1)} if m.group(1) else {}
        url = f"{VICTORIA}/api/v1/label/{m.group(2)}/values?" + urllib.parse.urlencode(query)
        status, out = http("GET", url)
        return status == 200 and bool(out["data"]), out
    end = int(time.time())
    q = urllib.parse.urlencode({"query": expr, "start": end - 600, "end": end, "step": 15})
    status, out = http("GET", f"{VICTORIA}/api/v1/query_range?{q}")
    return status == 200 and bool(out["data"]["result"]), out


def main():
    boards = []
    problems = check_provisioning()
    for path in sorted(glob.glob(os.path.join(DASHBOARDS, "*.json"))):
        d, p = check_model(path)
        boards.append((os.path.basename(path), d))
        problems += p
    titles = [d["title"] for _, d in boards]
    for wanted in ("Fleet overview", "Host detail", "VM detail", "ITIL"):
        if not any(wanted in t for t in titles):
            problems.append(f"no dashboard titled {wanted!r} among {titles}")
    assert not problems, "\n".join(problems)
    print(f"{len(boards)} dashboard models and the provisioning files pass their checks")

    agent, token = feed()
    try:
        queries = []
        for name, d in boards:
            for p in panels_of(d):
                for t in p.get("targets", []):
                    queries.append((f"{name}: {p['title']}", substitute(t["expr"])))
            for v in d["templating"]["list"]:
                if v.get("type") == "query":
                    queries.append((f"{name}: variable {v['name']}", substitute(v["definition"])))
            for a in d["annotations"]["list"]:
                queries.append((f"{name}: annotation {a['name']}", substitute(a["expr"])))
        # Points go agent → Tollgate → VictoriaMetrics; /metrics is scraped every second. Rates want a few
        # readings, so keep feeding until every query answers (or give up after two minutes).
        deadline = time.time() + 120
        n = 0
        while True:
            n += 1
            write_vm_points(token, n)
            missing = [(where, expr) for where, expr in queries if not has_data(expr)[0]]
            if not missing:
                break
            if time.time() > deadline:
                raise AssertionError("queries without data after 120 s:\n" +
                                     "\n".join(f"  {w}: {e}" for w, e in missing))
            time.sleep(1)
        print(f"every one of the {len(queries)} queries (panels, variables, annotations) returned data "
              f"from VictoriaMetrics")
    finally:
        agent.terminate()
        agent.wait(timeout=10)


if __name__ == "__main__":
    main()
