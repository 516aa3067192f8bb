"""InfluxDB's official Python client (influxdb-client) writes to Tollgate's v2 write API.

    influx_client_check.py BASE_URL ADMIN_PASSWORD

Signs in as the administrator, creates an agent account, writes points with the client (plain and gzip,
points and line-protocol records, second precision), reads them back through /api/v1/metrics/query, and
checks that a malformed write is refused with a 400 the client reports.
"""

import json
import sys
import urllib.parse
import urllib.request

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

base, admin_password = sys.argv[1], sys.argv[2]


def call(method, path, token=None, body=None):
    req = urllib.request.Request(base + path, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        req.add_header("Content-Type", "application/json")
        data = json.dumps(body).encode()
    with urllib.request.urlopen(req, data) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def sign_in(username, password):
    return call("POST", "/api/v1/auth/tokens", body={"username": username, "password": password})["token"]


admin = sign_in("admin", admin_password)
call("POST", "/api/v1/users", admin, {"username": "py-agent", "password": "py-agent-password", "roles": ["agent"]})
agent = sign_in("py-agent", "py-agent-password")

t0 = 1_700_000_000
for gzip in (False, True):
    with InfluxDBClient(url=base, token=agent, org="tollgate", enable_gzip=gzip) as client:
        writer = client.write_api(write_options=SYNCHRONOUS)
        host = "hv-gzip" if gzip else "hv-plain"
        writer.write(
            bucket="fleet",
            record=[
                Point("cpu").tag("host", host).tag("cluster", "eu 1").field("usage", 12.5).time(t0, WritePrecision.S),
                Point("cpu").tag("host", host).tag("cluster", "eu 1").field("usage", 14).time(t0 + 10, WritePrecision.S),
            ],
            write_precision=WritePrecision.S,
        )
        writer.write(bucket="fleet", record=f"mem,host={host} used=42i {t0}", write_precision=WritePrecision.S)

        try:
            writer.write(bucket="fleet", record="cpu,host=bad usage=not-a-number", write_precision=WritePrecision.S)
        except ApiException as e:
            assert e.status == 400, e
            assert "line 1" in (e.body or ""), e.body
        else:
            raise AssertionError("a malformed write was accepted")


def series(measurement, field, tags):
    query = urllib.parse.urlencode(
        {
            "measurement": measurement,
            "field": field,
            "tags": tags,
            "from": "2023-11-14T22:13:00Z",
            "to": "2023-11-14T22:15:00Z",
        }
    )
    return call("GET", f"/api/v1/metrics/query?{query}", admin)["series"]


for host in ("hv-plain", "hv-gzip"):
    cpu = series("cpu", "usage", f"host={host}")
    assert len(cpu) == 1, cpu
    assert cpu[0]["tags"] == {"host": host, "cluster": "eu 1"}, cpu
    assert cpu[0]["points"] == [[t0 * 1000, 12.5], [(t0 + 10) * 1000, 14.0]], cpu
    mem = series("mem", "used", f"host={host}")
    assert mem[0]["points"] == [[t0 * 1000, 42.0]], mem
assert series("cpu", "usage", "host=bad") == []
print("influxdb-client wrote plain and gzip batches; every point read back; a malformed write got its 400")
