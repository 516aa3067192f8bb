"""One HTTP call for the test scripts: a JSON (or raw bytes) body, an optional bearer token, and the answer as
(status, body), the body parsed when it is JSON. Errors come back as their status, never raised."""

import json
import urllib.error
import urllib.request


def _body(raw, content_type):
    text = raw.decode()
    if text and content_type == "application/json":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def http(method, url, body=None, token=None, content_type="application/json"):
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["content-type"] = content_type
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, _body(r.read(), r.headers.get_content_type())
    except urllib.error.HTTPError as e:
        return e.code, _body(e.read(), e.headers.get_content_type())
