"""Small blocking HTTP calls outside the measurement window (readiness, versions, /metrics, /tokenize).

The load client has its own aiohttp path; these are for the one-off requests
around it, with a timeout always, and never an exception for an HTTP status.

One path policy (docs/engines.md): every connection perfgate makes is direct,
never through ``HTTP(S)_PROXY``. Loopback must never be proxied (on a proxied
runner without ``no_proxy`` the readiness probe "timed out" after 600 s), and
the load client (raw, aiohttp without ``trust_env``, /tokenize's http.client)
cannot be, so the probes, /metrics, /version and cache resets take the same
path as the load they surround, to an engine or to an endpoint.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

NETWORK_ERRORS = (urllib.error.URLError, OSError, TimeoutError)

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""urllib without the environment's proxies: the load client's path."""


def request(method: str, url: str, body: dict | None = None, timeout: float = 5.0,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of one request; an HTTP error status is returned, a network failure raises."""
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _DIRECT.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_text(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> str | None:
    """The body of a 200 answer as text, or None (any other status, or no answer)."""
    try:
        status, body = request("GET", url, timeout=timeout, headers=headers)
    except NETWORK_ERRORS:
        return None
    return body.decode("utf-8", errors="replace") if status == 200 else None


def probe_version(base_url: str, paths: tuple[str, ...] = ("/version", "/get_server_info"),
                  timeout: float = 5.0, headers: dict[str, str] | None = None) -> str | None:
    """The engine version from the first of ``paths`` that answers ``{"version": ...}``, or None."""
    for path in paths:
        text = get_text(base_url + path, timeout, headers)
        try:
            data = json.loads(text) if text else None
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("version"):
            return str(data["version"])
    return None
