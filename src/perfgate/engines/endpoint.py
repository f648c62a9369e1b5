"""An endpoint perfgate did not start: its auth header, the model it serves, and why it cannot be used.

One place turns what such an endpoint answers into a one-line cause (connection
refused, a base URL ending in /v1, 401/403, a model it does not serve, listed
with the ones it does), so the pool before the first trial, a trial that finds
no way to count tokens, and ``perfgate load`` all say the same true thing
instead of a symptom ("no tokenizer").

The auth header's value comes from an environment variable and lives only in
:class:`EndpointAuth`, whose repr and str show the variable's name, never the
value; no message built here contains it.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from perfgate._http import NETWORK_ERRORS, request
from perfgate.engines.server import ServerError

TOKEN_ENV = "PERFGATE_ENDPOINT_TOKEN"
"""Read when no variable is named: its value is sent as ``Authorization: Bearer <value>``."""

_HEADER_FORM = re.compile(r"([A-Za-z][A-Za-z0-9-]*):[ \t]+(\S.*)")  # "X-Api-Key: value": a full header


class EndpointError(ServerError):
    """An endpoint perfgate did not start cannot be used; the message names the cause in one line."""


class EndpointAuth:
    """One auth header taken from an environment variable. Shows the variable's name, never the value."""

    __slots__ = ("env", "header", "_value", "_environ")

    def __init__(self, env: str, header: str, value: str, environ: Mapping[str, str] | None = None):
        self.env = env  # the variable's name: safe to print
        self.header = header  # the header's name: safe to print
        self._value = value
        self._environ = environ  # where to re-read it (None: os.environ)

    def headers(self) -> dict[str, str]:
        """The header to send, for a request being made now (do not keep or print the result)."""
        return {self.header: self._value}

    def refresh(self) -> None:
        """Read the variable again (per trial: a projected service-account token expires mid-nightly); a
        variable that became empty or unsendable keeps the last good value, the endpoint then says 401."""
        try:
            again = endpoint_auth(self.env, self._environ)
        except EndpointError:
            return
        if again is not None:
            self.header, self._value = again.header, again._value

    def redact(self, text: str) -> str:
        """``text`` with the secret replaced, for a server's answer quoted in a message."""
        secret = self._value.split(" ", 1)[1] if self._value.startswith("Bearer ") else self._value
        return text.replace(self._value, "***").replace(secret, "***") if secret else text

    def __repr__(self) -> str:
        return f"EndpointAuth({self.header} from ${self.env})"

    __str__ = __repr__


def endpoint_auth(env: str | None = None, environ: Mapping[str, str] | None = None) -> EndpointAuth | None:
    """The auth header from variable ``env`` (required to be set), or from ``$PERFGATE_ENDPOINT_TOKEN`` if set.

    A value ``Name: value`` is sent as that header; ``Bearer x`` or a bare token as ``Authorization: Bearer x``.
    """
    environ = os.environ if environ is None else environ
    name = env or TOKEN_ENV
    raw = (environ.get(name) or "").strip()
    if not raw:
        if env:
            raise EndpointError(f"environment variable {env} (the endpoint's auth token) is not set or empty")
        return None
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in raw):
        raise EndpointError(f"${name} holds characters an HTTP header cannot carry (control or non-ASCII)")
    if raw.startswith("@"):  # "@/var/run/secrets/.../token": the value is the file's, read now
        try:
            raw = open(raw[1:], encoding="utf-8").read().strip()  # noqa: SIM115 (one read)
        except OSError as exc:
            raise EndpointError(f"${name} names a token file that cannot be read: {exc.strerror}") from None
        if not raw:
            raise EndpointError(f"${name} names an empty token file")
    m = _HEADER_FORM.fullmatch(raw)
    if m and m.group(1).lower() != "bearer":
        return EndpointAuth(name, m.group(1), m.group(2), environ)
    token = raw.split(None, 1)[1] if raw.lower().startswith("bearer ") and " " in raw else raw
    return EndpointAuth(name, "Authorization", f"Bearer {token}", environ)


def _headers(auth: EndpointAuth | None, extra: Mapping[str, str] | None = None) -> dict[str, str] | None:
    out = {**(extra or {}), **(auth.headers() if auth is not None else {})}
    return out or None


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` as given to ``--perf-endpoint-header``; EndpointError with one line on anything else."""
    m = _HEADER_FORM.fullmatch(text.strip())
    if not m or any(ord(c) < 0x20 or ord(c) > 0x7E for c in text.strip()):
        raise EndpointError(f"header {text!r}: give 'Name: value' (ASCII, e.g. 'Host: model.example.com')")
    if m.group(1).lower() in ("content-length", "transfer-encoding", "connection"):
        raise EndpointError(f"header {m.group(1)}: perfgate sets it itself")
    return m.group(1), m.group(2)


PRESETS = ("kserve",)
"""Route layouts of known deployments (docs/engines.md)."""


@dataclass(frozen=True)
class EndpointOptions:
    """How an endpoint is deployed: where its server routes are, the headers it wants, the throttle policy."""

    server_url: str | None = None  # base of /metrics, /tokenize, /version (None: the endpoint's URL)
    preset: str | None = None  # "kserve": OpenAI routes under <host>/openai/v1/..., server routes at <host>
    headers: tuple[tuple[str, str], ...] = ()  # sent on every request (e.g. Host: for ingress routing)
    throttle: str = "count"  # what a 429/503 does (perfgate.measure.metrics.THROTTLE_POLICIES)

    def bases(self, url: str) -> tuple[str, str | None]:
        """(the OpenAI routes' base, the server routes' base or None when it is the same)."""
        url = url.rstrip("/")
        server = self.server_url.rstrip("/") if self.server_url else None
        if self.preset == "kserve":  # KServe's OpenAI routes live under /openai; the server's own at the root
            if url.endswith("/openai"):
                return url, server or url[: -len("/openai")]
            return url + "/openai", server or url
        return url, server


def metrics_note(server_base: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> str | None:
    """One line when the server routes' base has no /metrics (server_metrics would stay empty silently)."""
    try:
        status, _ = request("GET", server_base + "/metrics", timeout=timeout, headers=dict(headers or {}))
    except NETWORK_ERRORS as exc:
        return f"no /metrics at {server_base}/metrics ({_network_cause(server_base, exc, timeout)}): server_metrics stay empty"
    if status == 200:
        return None
    return (f"no /metrics at {server_base}/metrics (HTTP {status}): server_metrics stay empty (behind KServe or an "
            "ingress, give the server routes' base: --perf-endpoint-server-url or load's --server-url, or the "
            "kserve preset)")


@dataclass(frozen=True)
class EndpointProbe:
    """What ``GET /v1/models`` said: the served model ids (None when it lists none) or the problem, one line."""

    base_url: str
    served: tuple[str, ...] | None = None
    problem: str | None = None


def _network_cause(base_url: str, exc: BaseException, timeout: float) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        where = urllib.parse.urlsplit(base_url)
        return (f"cannot connect to {base_url}: connection refused (nothing listens on "
                f"{where.hostname}:{where.port or (443 if where.scheme == 'https' else 80)}; is the server up?)")
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"no answer from {base_url} within {timeout:.0f} s"
    return f"cannot reach {base_url}: {reason}"


def _auth_cause(base_url: str, status: int, path: str, auth: EndpointAuth | None) -> str:
    if auth is None:
        return (f"endpoint {base_url} answered HTTP {status} on {path}: it wants a token; put it in ${TOKEN_ENV} "
                "(sent as 'Authorization: Bearer ...') or name the variable that holds it")
    refused = "rejected" if status == 401 else "does not allow"
    return f"endpoint {base_url} answered HTTP {status} on {path}: it {refused} the {auth.header} header from ${auth.env}"


def probe(base_url: str, auth: EndpointAuth | None = None, timeout: float = 10.0,
          headers: Mapping[str, str] | None = None) -> EndpointProbe:
    """Ask the endpoint what it serves; every failure becomes a one-line cause in ``problem``."""
    base_url = base_url.rstrip("/")
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return EndpointProbe(base_url, problem=f"endpoint {base_url!r} is not an http(s) URL (e.g. http://host:8000)")
    if parts.path.rstrip("/").endswith("/v1"):
        fixed = base_url[: base_url.rstrip("/").rfind("/v1")]
        return EndpointProbe(base_url, problem=f"endpoint {base_url} ends in /v1: give the server's base URL, {fixed} "
                                               "(perfgate adds /v1/completions, /tokenize and /metrics itself)")
    try:
        status, body = request("GET", base_url + "/v1/models", timeout=timeout, headers=_headers(auth, headers))
    except NETWORK_ERRORS as exc:
        return EndpointProbe(base_url, problem=_network_cause(base_url, exc, timeout))
    if status in (401, 403):
        return EndpointProbe(base_url, problem=_auth_cause(base_url, status, "/v1/models", auth))
    if status == 200:
        try:
            data = json.loads(body).get("data")
            ids = tuple(str(m["id"]) for m in data if isinstance(m, dict) and m.get("id"))
        except (ValueError, AttributeError, TypeError):
            ids = ()
        return EndpointProbe(base_url, served=ids or None)
    try:  # no model list: a server that is up but lists nothing is still usable (the old /health rule)
        health, _ = request("GET", base_url + "/health", timeout=timeout, headers=_headers(auth, headers))
    except NETWORK_ERRORS as exc:
        return EndpointProbe(base_url, problem=_network_cause(base_url, exc, timeout))
    if health == 200:
        return EndpointProbe(base_url)
    if health in (401, 403):
        return EndpointProbe(base_url, problem=_auth_cause(base_url, health, "/health", auth))
    return EndpointProbe(base_url, problem=f"endpoint {base_url} is not serving: HTTP {status} on /v1/models, "
                                           f"HTTP {health} on /health (is it the base URL of an OpenAI-compatible server?)")


def unknown_model(found: EndpointProbe, model: str, hint: str = "name the served model") -> str | None:
    """The one-line cause when the endpoint lists its models and ``model`` is not one of them."""
    if found.served is None or model in found.served:
        return None
    return f"endpoint {found.base_url} does not serve model {model!r}; it serves: {', '.join(found.served)} ({hint})"


def choose_model(found: EndpointProbe, explicit: str | None, candidates: Iterable[str | None],
                 hint: str = "name one with --perf-endpoint-model NAME") -> tuple[str, str | None]:
    """(the model name to send, a note or None).

    ``explicit`` if given (it must be served when the endpoint lists its models); else the first candidate
    the endpoint lists (the matrix model's HF id, then its key); else :class:`EndpointError` listing the
    served names. An endpoint serving one other model is refused too: its numbers would be labelled with
    the case's model (qwen's case, opt's numbers); naming the model says that is meant. The note is kept
    in the return for callers that still have one to show (None today).
    """
    if found.problem:
        raise EndpointError(found.problem)
    names = [c for c in dict.fromkeys(candidates) if c]
    if explicit:
        problem = unknown_model(found, explicit, "check the name given for the endpoint's model")
        if problem:
            raise EndpointError(problem)
        return explicit, None
    if found.served is None:  # nothing to check against: send the first name and let the endpoint judge
        return names[0], None
    for name in names:
        if name in found.served:
            return name, None
    if len(found.served) == 1:
        only = found.served[0]
        raise EndpointError(f"endpoint {found.base_url} serves one model, {only!r}, not "
                            f"{' or '.join(map(repr, names))}: not measuring it as this case's model "
                            f"({hint.replace('NAME', repr(only))} if that is meant)")
    raise EndpointError(f"endpoint {found.base_url} serves none of {', '.join(map(repr, names))}; it serves: "
                        f"{', '.join(found.served)} ({hint})")


def diagnose(base_url: str, auth: EndpointAuth | None = None, model: str | None = None,
             timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> str | None:
    """The one-line reason the endpoint cannot serve ``model``, or None when nothing is wrong that we can see."""
    found = probe(base_url, auth, timeout, headers)
    if found.problem:
        return found.problem
    return unknown_model(found, model, "pass the served name") if model else None


def tokenize_answer(base_url: str, auth: EndpointAuth | None, model: str, timeout: float = 10.0,
                    headers: Mapping[str, str] | None = None) -> str:
    """What ``POST /tokenize`` answers, in a few words (for a message explaining why it cannot be used)."""
    try:
        status, body = request("POST", base_url.rstrip("/") + "/tokenize", {"model": model, "prompt": "probe"},
                               timeout=timeout, headers=_headers(auth, headers))
    except NETWORK_ERRORS as exc:
        return _network_cause(base_url, exc, timeout)
    if status == 200:
        return "/tokenize answered 200"
    if status in (401, 403):
        return _auth_cause(base_url, status, "/tokenize", auth)
    detail = ""
    try:
        err = json.loads(body)
    except ValueError:
        err = None
    if isinstance(err, dict):  # vLLM: {"message": ...} or {"error": {"message": ...}}; FastAPI: {"detail": ...}
        inner = err.get("error")
        msg = err.get("message") or (inner.get("message") if isinstance(inner, dict) else inner) or err.get("detail")
        detail = f": {str(msg)[:160]}" if msg else ""
    if auth is not None:
        detail = auth.redact(detail)
    return f"/tokenize answered HTTP {status}{detail}"
