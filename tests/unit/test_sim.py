"""The reference engine (perfgate.sim) against its own timing model, with a plain aiohttp client.

Each server is built with build_app() and runs in-process on a free loopback
port, on its own event loop in a thread; the client runs its own loop in the
test's thread. One request at a time unless a test says otherwise. Timing is
checked against a bare timer on the server's own loop (late_beyond_the_loop):
it holds on a busy host, where both are delayed alike.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from perfgate.sim import (
    SIM_KEY,
    SimConfig,
    base_delays_ms,
    build_app,
    chunk_sizes,
    config_from_args,
)

PROBE_PERIOD_S = 0.0005
SLACK_MS = 0.25  # the clocks' read-out and the sim's own bookkeeping between a wake-up and its write


async def _timer_probe(out: list, period_s: float = PROBE_PERIOD_S) -> None:
    """A bare timer on the server's event loop, on absolute deadlines every ``period_s`` as the sim's chunks are:
    ``(due, woke)`` pairs on the perf_counter clock (the sim's truth clock). It is late exactly when the loop
    could not run: the host's scheduling, measured where and when the sim runs."""
    loop = asyncio.get_running_loop()
    offset = time.perf_counter() - loop.time()
    due = loop.time()
    while True:
        due += period_s
        fut = loop.create_future()
        handle = loop.call_at(due, fut.set_result, None)
        try:
            await fut
        finally:
            handle.cancel()  # cancelled (the server stops): the timer must not set a cancelled future
        out.append((due + offset, time.perf_counter()))


def late_beyond_the_loop(chunks, probe) -> list[float]:
    """For each chunk: ms from the moment the server's loop first woke a probe timer due at or after the chunk's
    due time, to the chunk's write. A timer due no earlier sorts no earlier in the loop's queue, so a sim that
    writes on its deadline writes before that probe wakes, however busy the host: > SLACK_MS means the sim
    itself was late (a 10 us margin covers the sim's arrival stamp, taken just before its loop-clock origin)."""
    dues = [due for due, _ in probe]
    out = []
    for c in chunks:
        i = bisect.bisect_left(dues, c["intended"] + 1e-5)
        assert i < len(probe), "the probe stopped before the chunk was due"
        out.append((c["written"] - probe[i][1]) * 1000)
    return out


@contextmanager
def serve(config: SimConfig, probe: list | None = None):
    """Run build_app(config) on 127.0.0.1:<free port> in a thread; yield (base_url, app). With ``probe`` (a list),
    `_timer_probe` runs on the server's loop and fills it."""
    app = build_app(config)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            box["port"] = runner.addresses[0][1]
            if probe is not None:
                box["probe"] = loop.create_task(_timer_probe(probe))
        except BaseException as e:  # pragma: no cover - surfaced below
            box["error"] = e
        finally:
            started.set()
        if "error" not in box:
            loop.run_forever()
        if "probe" in box:
            box["probe"].cancel()
            loop.run_until_complete(asyncio.gather(box["probe"], return_exceptions=True))
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="perfgate-sim-test", daemon=True)
    thread.start()
    assert started.wait(10), "sim did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://127.0.0.1:{box['port']}", app
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def client(fn):
    """Run ``fn(session)`` in a fresh event loop with a bounded aiohttp session."""

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            return await fn(session)

    return asyncio.run(go())


async def sse_events(resp: aiohttp.ClientResponse) -> list:
    """Parse an SSE body into decoded JSON events, with "[DONE]" kept as the string."""
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = []
    async for line in resp.content:
        line = line.strip()
        if not line:
            continue
        assert line.startswith(b"data: "), line
        data = line[len(b"data: "):].decode()
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def get_json(session, url):
    async with session.get(url) as r:
        assert r.status == 200
        return await r.json()


async def post_json(session, url, body, headers=None):
    async with session.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


async def stream(session, url, body, headers=None):
    async with session.post(url, json={**body, "stream": True}, headers=headers) as r:
        return await sse_events(r)


FAST = SimConfig(model_name="simmy", ttft_base_ms=2.0, itl_ms=0.5, version="v-test")


@pytest.fixture(scope="module")
def fast():
    with serve(FAST) as (url, app):
        yield url, app


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("k", [1, 3])
def test_completions_stream_exact_tokens_usage_ids_done(k):
    with serve(SimConfig(ttft_base_ms=1.0, itl_ms=0.2, tokens_per_chunk=k)) as (url, _):
        body = {"model": "sim", "prompt": "a b c d e", "max_tokens": 10, "return_token_ids": True,
                "stream_options": {"include_usage": True}}
        events = client(lambda s: stream(s, url + "/v1/completions", body))
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}
    content = events[:-2]
    assert [len(e["choices"][0]["token_ids"]) for e in content] == chunk_sizes(10, k)
    ids = [t for e in content for t in e["choices"][0]["token_ids"]]
    assert ids == list(range(10))
    assert "".join(e["choices"][0]["text"] for e in content).split() == [f"t{i}" for i in range(10)]
    assert [e["choices"][0]["finish_reason"] for e in content] == [None] * (len(content) - 1) + ["length"]
    assert all(e["object"] == "text_completion" for e in content)


def test_chat_stream_role_chunk_first(fast):
    url, _ = fast
    body = {"model": "simmy", "messages": [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "hello there world"}],
            "max_tokens": 7, "stream_options": {"include_usage": True}}
    events = client(lambda s: stream(s, url + "/v1/chat/completions", body))
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["prompt_tokens"] == 5
    content = events[1:-2]
    assert len(content) == 7
    assert all("role" not in e["choices"][0]["delta"] for e in content)
    assert all("token_ids" not in e["choices"][0] for e in content)  # only when asked for
    assert content[-1]["choices"][0]["finish_reason"] == "length"


def test_no_usage_chunk_unless_asked(fast):
    url, _ = fast
    events = client(lambda s: stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 4}))
    assert events[-1] == "[DONE]"
    assert len(events) == 5 and all(e["choices"] for e in events[:-1])


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_non_streaming(fast, api):
    url, _ = fast
    if api == "chat":
        body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "one two"}]}]}
    else:
        body = {"prompt": [101, 102, 103]}  # token ids count as themselves
    status, out = client(lambda s: post_json(s, f"{url}/v1/{'chat/' if api == 'chat' else ''}completions",
                                             {**body, "max_tokens": 6, "return_token_ids": True}))
    assert status == 200
    choice = out["choices"][0]
    text = choice["message"]["content"] if api == "chat" else choice["text"]
    assert len(text.split()) == 6 and choice["token_ids"] == list(range(6))
    assert out["usage"] == {"prompt_tokens": 2 if api == "chat" else 3, "completion_tokens": 6,
                            "total_tokens": 8 if api == "chat" else 9}
    assert out["object"] == ("chat.completion" if api == "chat" else "text_completion")


def test_default_max_tokens_and_max_completion_tokens(fast):
    url, _ = fast

    async def go(s):
        a = await post_json(s, url + "/v1/completions", {"prompt": "hi"})
        b = await post_json(s, url + "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 3})
        return a, b

    (sa, a), (sb, b) = client(go)
    assert sa == sb == 200
    assert a["usage"]["completion_tokens"] == 16
    assert b["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("body", [
    {"prompt": "x", "max_tokens": 0},
    {"prompt": "x", "max_tokens": "3"},
    {"prompt": "x", "max_tokens": True},
    {"prompt": ["a", "b"], "max_tokens": 3},
    {"max_tokens": 3},
    {"prompt": "x", "max_tokens": 3, "n": 2},
    {"prompt": "x", "max_tokens": 40000},  # beyond max_model_len
    [1, 2],
])
def test_bad_requests_are_400(fast, body):
    url, app = fast
    before = len(app[SIM_KEY].truth)
    status, out = client(lambda s: post_json(s, url + "/v1/completions", body))
    assert status == 400 and out["object"] == "error" and out["code"] == 400
    assert len(app[SIM_KEY].truth) == before  # no truth record for a refused request


def test_tokenize(fast):
    url, _ = fast

    async def go(s):
        return (await post_json(s, url + "/tokenize", {"model": "simmy", "prompt": "  the quick\nbrown   fox "}),
                await post_json(s, url + "/tokenize", {"messages": [{"role": "user", "content": "a b"},
                                                                    {"role": "assistant", "content": "c"}]}),
                await post_json(s, url + "/tokenize", {"nothing": 1}))

    (s1, a), (s2, b), (s3, _) = client(go)
    assert s1 == s2 == 200 and s3 == 400
    assert a == {"count": 4, "tokens": [0, 1, 2, 3], "max_model_len": FAST.max_model_len}
    assert b["count"] == 3 and len(b["tokens"]) == 3


def test_info_endpoints(fast):
    url, _ = fast

    async def go(s):
        async with s.get(url + "/health") as r:
            health = r.status
        return health, await get_json(s, url + "/v1/models"), await get_json(s, url + "/version"), \
            await get_json(s, url + "/sim/config")

    health, models, version, config = client(go)
    assert health == 200
    assert [m["id"] for m in models["data"]] == ["simmy"]
    assert version == {"version": "v-test"}
    assert config["itl_ms"] == FAST.itl_ms


# --------------------------------------------------------------------------- truth


def test_truth_records_ids_reset_and_duplicates():
    with serve(FAST) as (url, app):
        async def go(s):
            await stream(s, url + "/v1/completions", {"prompt": "a b c", "max_tokens": 3}, {"X-Request-Id": "r-1"})
            await stream(s, url + "/v1/completions", {"prompt": "a", "max_tokens": 2}, {"X-Request-Id": "r-1"})
            await stream(s, url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}],
                                                            "max_tokens": 2})
            truth = await get_json(s, url + "/sim/truth")
            async with s.post(url + "/sim/reset") as r:
                assert r.status == 200
            await stream(s, url + "/v1/completions", {"prompt": "a", "max_tokens": 1})
            return truth, await get_json(s, url + "/sim/truth")

        truth, after = client(go)
    assert list(truth) == ["r-1", "r-1#2", "sim-2"]
    first = truth["r-1"]
    assert (first["id"], first["index"], first["api"], first["stream"]) == ("r-1", 0, "completions", True)
    assert (first["prompt_tokens"], first["max_tokens"]) == (3, 3)
    assert [c["tokens"] for c in first["chunks"]] == [1, 1, 1]
    assert first["error"] is None and first["role_written"] is None
    assert first["arrival"] <= first["headers_sent"] <= first["chunks"][0]["written"] <= first["done"]
    assert first["ttft_s"] == pytest.approx(first["chunks"][0]["written"] - first["arrival"])
    chat = truth["sim-2"]
    assert chat["api"] == "chat" and chat["headers_sent"] <= chat["role_written"] <= chat["chunks"][0]["written"]
    assert list(after) == ["sim-0"]  # reset clears the records and restarts the index


def test_client_going_away_is_recorded(caplog):
    with serve(SimConfig(ttft_base_ms=1.0, itl_ms=5.0)) as (url, app):
        async def go(s):
            async with s.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 50, "stream": True},
                               headers={"X-Request-Id": "gone"}) as r:
                await r.content.readline()  # the first chunk, then hang up
                r.close()
            for _ in range(200):
                t = (await get_json(s, url + "/sim/truth"))["gone"]
                if t["error"]:
                    break
                await asyncio.sleep(0.01)
            async with s.get(url + "/metrics") as r:
                return t, await r.text()

        t, metrics = client(go)
    assert t["error"].startswith("client went away") and t["done"] is None
    assert 1 <= len(t["chunks"]) < 50
    assert 'vllm:num_requests_running{model_name="sim"} 0.0' in metrics
    assert 'vllm:e2e_request_latency_seconds_count{model_name="sim"} 0.0' in metrics
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a hang-up is not a server error


def test_truth_clock_is_the_clients_perf_counter(fast):
    """perf_counter is CLOCK_MONOTONIC on Linux: truth times fall inside the client's own window."""
    url, _ = fast

    async def go(s):
        t_send = time.perf_counter()
        await stream(s, url + "/v1/completions", {"prompt": "a", "max_tokens": 2}, {"X-Request-Id": "clock"})
        t_end = time.perf_counter()
        return t_send, t_end, (await get_json(s, url + "/sim/truth"))["clock"]

    t_send, t_end, t = client(go)
    # (`done` is taken just after the last write returns, so the client may read [DONE] first.)
    assert t_send < t["arrival"] < t["chunks"][0]["written"] < t_end


def test_ttft_and_chunk_gaps_follow_the_model():
    A, B, C, K = 20.0, 0.25, 3.0, 2
    cfg = SimConfig(ttft_base_ms=A, ttft_per_prompt_token_ms=B, itl_ms=C, tokens_per_chunk=K)
    prompts = [1, 8, 40, 120]

    async def go(s, url):
        await stream(s, url + "/v1/completions", {"prompt": "warm up", "max_tokens": 2})
        async with s.post(url + "/sim/reset") as r:
            assert r.status == 200
        for i, p in enumerate(prompts):
            for api in ("completions", "chat"):
                body = ({"prompt": " ".join(["w"] * p)} if api == "completions"
                        else {"messages": [{"role": "user", "content": " ".join(["w"] * p)}]})
                await stream(s, f"{url}/v1/{'chat/' if api == 'chat' else ''}completions",
                             {**body, "max_tokens": 9}, {"X-Request-Id": f"{api}-{i}"})
        return await get_json(s, url + "/sim/truth")

    probe: list = []
    with serve(cfg, probe) as (url, _):
        truth = client(lambda s: go(s, url))
    assert len(truth) == 2 * len(prompts)
    for rid, t in truth.items():
        p = prompts[int(rid.rsplit("-", 1)[1])]
        assert t["prompt_tokens"] == p
        chunks = t["chunks"]
        assert [c["tokens"] for c in chunks] == [2, 2, 2, 2, 1]  # the last chunk carries fewer
        # The instrument: intended times follow the model exactly, writes never come early.
        assert (chunks[0]["intended"] - t["arrival"]) * 1000 == pytest.approx(A + B * p, abs=1e-6)
        for a, b in zip(chunks, chunks[1:]):
            assert (b["intended"] - a["intended"]) * 1000 == pytest.approx(C * b["tokens"], abs=1e-6)
        assert all(c["written"] >= c["intended"] for c in chunks)
        assert t["ttft_s"] == pytest.approx(chunks[0]["written"] - t["arrival"], abs=1e-9)
    # And the writes land on time: the first chunk (TTFT) and every later one (the gaps) as soon as the server's
    # loop could run a timer due then. A busy host delays the probe as much as the sim; only the sim's own
    # lateness shows.
    late = [ms for t in truth.values() for ms in late_beyond_the_loop(t["chunks"], probe)]
    assert max(late) <= SLACK_MS, sorted(late)[-5:]


def test_lateness_does_not_accumulate():
    """Deadlines are absolute: the last chunk is due at A + C·(n-1), however many chunks came before."""
    cfg = SimConfig(ttft_base_ms=5.0, itl_ms=1.0)
    probe: list = []
    with serve(cfg, probe) as (url, _):
        async def go(s):
            await stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 200}, {"X-Request-Id": "r"})
            return (await get_json(s, url + "/sim/truth"))["r"]

        t = client(go)
    last = t["chunks"][-1]
    assert (last["intended"] - t["arrival"]) * 1000 == pytest.approx(5.0 + 199 * 1.0, abs=1e-6)
    late_ms = [(c["written"] - c["intended"]) * 1000 for c in t["chunks"]]
    assert min(late_ms) >= 0
    # Each write, the last included, comes as soon as the loop let a timer due then run: cumulative sleeps would
    # fall behind by every earlier chunk's lateness, a bare timer on the same loop does not.
    beyond = late_beyond_the_loop(t["chunks"], probe)
    assert max(beyond) <= SLACK_MS, (beyond[-5:], late_ms[-5:])


def test_slowdown_per_inflight():
    """With F=1, a request that arrives while another runs has every delay doubled."""
    A, C, F = 10.0, 2.0, 1.0
    with serve(SimConfig(ttft_base_ms=A, itl_ms=C, slowdown_per_inflight=F)) as (url, app):
        async def go(s):
            long = asyncio.create_task(stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 100},
                                              {"X-Request-Id": "long"}))
            while "long" not in app[SIM_KEY].truth or not app[SIM_KEY].truth["long"].chunks:
                await asyncio.sleep(0.002)
            await stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 3}, {"X-Request-Id": "short"})
            await long
            return await get_json(s, url + "/sim/truth")

        truth = client(go)
    short = truth["short"]
    offsets = [(c["intended"] - short["arrival"]) * 1000 for c in short["chunks"]]
    assert offsets == pytest.approx([2 * A, 2 * A + 2 * C, 2 * A + 4 * C], abs=1e-6)
    # The long request ran alone at first (factor 1) and shared the server later (factor 2).
    long_gaps = [(b["intended"] - a["intended"]) * 1000 for a, b in zip(truth["long"]["chunks"],
                                                                          truth["long"]["chunks"][1:])]
    assert min(long_gaps) == pytest.approx(C) and max(long_gaps) == pytest.approx(2 * C)


def test_inject_slowdown_multiplies_every_delay():
    with serve(SimConfig(ttft_base_ms=4.0, itl_ms=1.0, inject_slowdown=1.5)) as (url, _):
        async def go(s):
            await stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 3}, {"X-Request-Id": "r"})
            return (await get_json(s, url + "/sim/truth"))["r"]

        t = client(go)
    offsets = [(c["intended"] - t["arrival"]) * 1000 for c in t["chunks"]]
    assert offsets == pytest.approx([6.0, 7.5, 9.0], abs=1e-6)


def test_jitter_is_seeded_per_request_index():
    def offsets(seed):
        with serve(SimConfig(ttft_base_ms=5.0, itl_ms=1.0, jitter_ms=1.0, seed=seed)) as (url, _):
            async def go(s):
                for i in range(3):
                    await stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 5},
                                 {"X-Request-Id": f"q{i}"})  # ids do not matter, the arrival index does
                return await get_json(s, url + "/sim/truth")

            truth = client(go)
        return [[round((c["intended"] - t["arrival"]) * 1000, 6) for c in t["chunks"]] for t in truth.values()]

    a, b, c = offsets(7), offsets(7), offsets(8)
    assert a == b
    assert a != c
    assert len({tuple(x) for x in a}) == 3  # requests differ from each other
    for req in a:  # jitter never makes a delay negative
        assert req[0] >= 0 and all(y >= x for x, y in zip(req, req[1:]))
    expected = base_delays_ms(SimConfig(ttft_base_ms=5.0, itl_ms=1.0, jitter_ms=1.0, seed=7), 1, [1] * 5, 1)
    assert a[1] == pytest.approx(list(_cumsum(expected)), abs=1e-5)


def _cumsum(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


# --------------------------------------------------------------------------- metrics


def test_metrics_parse_and_match_requests():
    cfg = SimConfig(model_name="m1", ttft_base_ms=2.0, itl_ms=0.5, tokens_per_chunk=2)
    plan = [(3, 5), (1, 4), (10, 1), (2, 6)]  # (prompt words, max_tokens)
    with serve(cfg) as (url, _):
        async def go(s):
            for words, n in plan:
                await stream(s, url + "/v1/completions", {"prompt": " ".join(["w"] * words), "max_tokens": n})
            async with s.get(url + "/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                return await r.text(), await get_json(s, url + "/sim/truth")

        text, truth = client(go)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model_name") == "m1" and "le" not in sample.labels:
                samples[sample.name] = sample.value
    n_chunks = sum(len(chunk_sizes(n, 2)) for _, n in plan)
    assert samples["vllm:time_to_first_token_seconds_count"] == len(plan)
    assert samples["vllm:e2e_request_latency_seconds_count"] == len(plan)
    assert samples["vllm:inter_token_latency_seconds_count"] == n_chunks - len(plan)
    assert samples["vllm:generation_tokens_total"] == sum(n for _, n in plan)
    assert samples["vllm:prompt_tokens_total"] == sum(w for w, _ in plan)
    assert samples["vllm:num_requests_running"] == 0
    assert samples["vllm:num_requests_waiting"] == 0
    assert samples["vllm:request_success_total"] == len(plan)
    ttft_sum = sum(t["ttft_s"] for t in truth.values())
    assert samples["vllm:time_to_first_token_seconds_sum"] == pytest.approx(ttft_sum, rel=1e-9)


def test_perfgate_scraper_reads_it(fast):
    from perfgate.measure.engine_metrics import parse_metrics

    url, _ = fast

    async def go(s):
        async with s.get(url + "/metrics") as r:
            return await r.text()

    m = parse_metrics(client(go))
    assert "vllm:time_to_first_token_seconds_count" in m and "vllm:generation_tokens_total" in m


def test_running_gauge_counts_inflight():
    with serve(SimConfig(ttft_base_ms=500.0)) as (url, app):
        async def go(s):
            tasks = [asyncio.create_task(stream(s, url + "/v1/completions", {"prompt": "x", "max_tokens": 1}))
                     for _ in range(3)]
            while len(app[SIM_KEY].truth) < 3:
                await asyncio.sleep(0.005)
            async with s.get(url + "/metrics") as r:
                during = await r.text()
            await asyncio.gather(*tasks)
            async with s.get(url + "/metrics") as r:
                return during, await r.text()

        during, after = client(go)
    assert 'vllm:num_requests_running{model_name="sim"} 3.0' in during
    assert 'vllm:num_requests_running{model_name="sim"} 0.0' in after


# --------------------------------------------------------------------------- CLI


def test_cli_options_map_to_config():
    _, cfg = config_from_args(["--model-name", "m", "--ttft-base-ms", "1", "--ttft-per-prompt-token-ms", "2",
                               "--itl-ms", "3", "--tokens-per-chunk", "4", "--slowdown-per-inflight", "0.5",
                               "--jitter-ms", "6", "--seed", "7", "--version", "v8", "--max-model-len", "9",
                               "--boot-sigma", "0.1", "--boot-seed", "11", "--drift-per-min", "0.2"])
    assert cfg == SimConfig("m", 1.0, 2.0, 3.0, 4, 0.5, 6.0, 7, "v8", 9, boot_sigma=0.1, boot_seed=11,
                            drift_per_min=0.2)
    _, fresh = config_from_args([])
    _, again = config_from_args([])
    assert fresh.boot_seed != again.boot_seed  # every boot draws its own speed factor unless seeded
    with pytest.raises(SystemExit):
        config_from_args(["--tokens-per-chunk", "0"])


def test_boot_factor_is_seeded_and_drift_grows_delays(monkeypatch):
    import perfgate.sim.state as eng

    a = eng.Sim(SimConfig(boot_sigma=0.2, boot_seed=1))
    b = eng.Sim(SimConfig(boot_sigma=0.2, boot_seed=1))
    c = eng.Sim(SimConfig(boot_sigma=0.2, boot_seed=2))
    assert a.boot_factor == b.boot_factor != c.boot_factor and a.factor() == pytest.approx(a.boot_factor)
    d = eng.Sim(SimConfig(drift_per_min=0.5))
    monkeypatch.setattr(eng.time, "monotonic", lambda: d.started + 120.0)  # two minutes later
    assert d.factor() == pytest.approx(2.0)


def test_python_dash_m_refuses_non_loopback():
    r = subprocess.run([sys.executable, "-m", "perfgate.sim", "--host", "0.0.0.0", "--port", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "loopback" in r.stderr
