"""The sim as an aiohttp application: its routes, the small handlers, and what a deployed endpoint checks.

The routes are those perfgate uses on real engines (``/v1/completions``,
``/v1/chat/completions``, ``/tokenize``, ``/health``, ``/version``,
``/v1/models``, ``/metrics``) plus the instrument's own ``/sim/config``,
``/sim/truth`` and ``/sim/reset`` (docs/sim.md). The generation handler is
:mod:`perfgate.sim.generate`.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from perfgate.sim.config import SimConfig
from perfgate.sim.generate import chat, completions
from perfgate.sim.request import BadRequest, count_prompt_tokens
from perfgate.sim.state import SIM_KEY, Sim

_MODEL_ROUTES = ("/v1/completions", "/v1/chat/completions", "/tokenize")


async def _tokenize(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not JSON") from None
        if not isinstance(body, dict) or ("prompt" not in body and "messages" not in body):
            raise BadRequest("expected {\"prompt\": ...} or {\"messages\": [...]}")
        n = count_prompt_tokens(body)
    except BadRequest as e:
        return e.response()
    return web.json_response({"count": n, "max_model_len": sim.config.max_model_len, "tokens": list(range(n))})


def _access_middleware(api_key: str | None, check_model: bool, model_name: str):
    """What a deployed engine checks before a request reaches it: a bearer token (``--api-key``, like vLLM's, but on
    every route except /health and /sim/*, so a test sees that each request carries it) and the model name
    (``--check-model``: 404 for a model it does not serve, as vLLM answers)."""

    @web.middleware
    async def access(request: web.Request, handler):
        path = request.path
        if api_key is not None and path != "/health" and not path.startswith("/sim/"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return web.json_response({"error": "Unauthorized"}, status=401)
        if check_model and request.method == "POST" and path in _MODEL_ROUTES:
            try:
                body = await request.json()  # aiohttp keeps the body: the handler reads it again
            except (ValueError, UnicodeDecodeError):
                body = None  # the handler answers 400
            if isinstance(body, dict) and body.get("model") not in (None, model_name):
                return BadRequest(f"The model `{body['model']}` does not exist.", 404).response()
        return await handler(request)

    return access


def build_app(config: SimConfig, *, api_key: str | None = None, check_model: bool = False,
              tokenize: bool = True, openai_prefix: str = "") -> web.Application:
    """The simulator as an aiohttp application; its state is ``app[SIM_KEY]``.

    ``api_key``, ``check_model`` and ``tokenize=False`` make it look like a deployed endpoint (token required,
    unknown model refused, no /tokenize); with none of them no middleware is in the request path.
    ``openai_prefix`` serves the OpenAI routes under it and the server routes at the root, as KServe does
    (``/openai/v1/completions``, ``/metrics``).
    """
    app = web.Application()
    if api_key is not None or check_model:
        app.middlewares.append(_access_middleware(api_key, check_model, config.model_name))
    sim = Sim(config)
    app[SIM_KEY] = sim

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": config.version})

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": config.model_name, "object": "model", "created": 0, "owned_by": "perfgate-sim",
             "root": config.model_name, "max_model_len": config.max_model_len}]})

    scrapes = [0]
    replicas = config.fault("replicas")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(sim.registry)
        if replicas is not None:  # N pods behind one URL: each scrape lands on the next one
            k = scrapes[0] % int(replicas.value)
            scrapes[0] += 1
            body += (b"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %d\n"
                     % (1_700_000_000 + k))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def sim_config(_: web.Request) -> web.Response:
        return web.json_response(asdict(config))

    async def sim_truth(_: web.Request) -> web.Response:
        return web.json_response({rid: t.to_json() for rid, t in sim.truth.items()})

    async def sim_reset(_: web.Request) -> web.Response:
        sim.reset()
        return web.json_response({"ok": True})

    r = app.router
    r.add_post(openai_prefix + "/v1/completions", completions)
    r.add_post(openai_prefix + "/v1/chat/completions", chat)
    if tokenize:
        r.add_post("/tokenize", _tokenize)
    r.add_get("/health", health)
    r.add_get("/version", version)
    r.add_get(openai_prefix + "/v1/models", models)
    r.add_get("/metrics", metrics)
    r.add_get("/sim/config", sim_config)
    r.add_get("/sim/truth", sim_truth)
    r.add_post("/sim/reset", sim_reset)
    return app
