"""Workloads beyond fixed exact lengths: datasets, length distributions, shared prefixes, multi-turn chats.

The exact fixed-length path (:func:`perfgate.measure.workload.prepare`) makes
every prompt unique so prefix caching never helps; these builders exercise it
on purpose, and every body is still built before the measurement window:

* **dataset** — ShareGPT-format JSON (a list) or JSONL (one entry a line):
  ``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}``;
  a request's prompt is a conversation's first human turn.
* **length distributions** — prompt and output lengths per request: fixed,
  uniform, normal (rounded, clipped) or the dataset's own.
* **shared prefixes** — ``groups`` prefixes of ``shared_prefix_tokens`` each;
  request *i* gets prefix *i mod groups* plus a unique suffix up to its length.
* **multi-turn** — conversations of ``turns`` turns (chat API); turn *k*'s
  request carries turns 1..k−1 (user and assistant) as history. The history's
  assistant text is pre-written (the dataset's reply, or synthetic words), not
  the engine's own reply, so bodies can be built before the window; turn *k*
  of every conversation is queued after every conversation's turn *k−1*.

Each request's asked prompt and output lengths are kept (``expected``) for
the delivered-workload check (:mod:`perfgate.measure.delivery`).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from perfgate.config.matrix import LengthDist, Scenario
from perfgate.config.vocabulary import WORDS
from perfgate.measure.loadgen import RequestSpec
from perfgate.measure.workload import (
    CountFn,
    PreparedWorkload,
    WorkloadError,
    _PromptSizer,
    request_body,
)
from perfgate.schema.result import Workload

_HUMAN = ("human", "user")
_ASSISTANT = ("gpt", "assistant", "chatgpt", "bard", "model")


@dataclass(frozen=True)
class Conversation:
    """One dataset entry: alternating (human, assistant) turn pairs; the last reply may be empty."""

    turns: tuple[tuple[str, str], ...]


def _entry(obj: object, where: str) -> Conversation | None:
    """One ShareGPT entry; None for an entry with no human turn (skipped, as ShareGPT loaders do)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("conversations"), list):
        raise WorkloadError(f"{where}: not a ShareGPT entry (needs a `conversations` list)")
    pairs: list[tuple[str, str]] = []
    for m in obj["conversations"]:
        if not isinstance(m, dict) or not isinstance(m.get("value"), str) or not isinstance(m.get("from"), str):
            raise WorkloadError(f"{where}: a conversation turn needs string `from` and `value`")
        role = m["from"].lower()
        if role in _HUMAN:
            pairs.append((m["value"], ""))
        elif role in _ASSISTANT and pairs and not pairs[-1][1]:
            pairs[-1] = (pairs[-1][0], m["value"])
        # system turns, and a reply before any question, are left out
    pairs = [p for p in pairs if p[0].strip()]
    return Conversation(tuple(pairs)) if pairs else None


def load_sharegpt(path: Path) -> list[Conversation]:
    """Read a ShareGPT-format file (``.jsonl``: one entry a line; else one JSON list); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read dataset ({exc.strerror})") from exc
    out: list[Conversation] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise WorkloadError(f"{path}: line {n}: not JSON ({exc})") from exc
            if (c := _entry(obj, f"{path}: line {n}")) is not None:
                out.append(c)
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise WorkloadError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(data, list):
            raise WorkloadError(f"{path}: a ShareGPT JSON file is a list of entries")
        for n, obj in enumerate(data):
            if (c := _entry(obj, f"{path}: entry {n}")) is not None:
                out.append(c)
    if not out:
        raise WorkloadError(f"{path}: no conversation with a human turn")
    return out


def draw_lengths(dist: LengthDist, n: int, rng: random.Random) -> list[int]:
    """``n`` lengths from a fixed / uniform / normal distribution (``dataset`` lengths come from the entries)."""
    if dist.dist == "fixed":
        return [int(dist.value)] * n  # type: ignore[arg-type]
    if dist.dist == "uniform":
        return [rng.randint(dist.low, dist.high) for _ in range(n)]  # type: ignore[arg-type]
    if dist.dist == "normal":
        lo, hi = dist.low or 1, dist.high or math.inf
        return [int(min(hi, max(lo, round(rng.gauss(dist.mean, dist.std))))) for _ in range(n)]  # type: ignore[arg-type]
    raise WorkloadError("dataset lengths are taken from the dataset's entries, not drawn")


def _text_tokens(count: CountFn, text: str, base: int) -> int:
    """Tokens a piece of text adds (the count less the empty prompt's template/BOS), at least 1."""
    return max(1, count(text) - base)


def _synthetic_words(n: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, n)))


class _Builder:
    """Builds one trial's requests (and warm-up) of a shaped scenario."""

    def __init__(self, scenario: Scenario, workload: Workload, model: str, count: CountFn, return_token_ids: bool,
                 trial: int):
        self.spec, self.w, self.model, self.count = scenario.spec.workload, workload, model, count
        self.ids = return_token_ids
        self.rng = random.Random(f"{workload.seed}:{trial}:shaped")
        self.path = "/v1/chat/completions" if workload.api == "chat" else "/v1/completions"
        self.sizer = _PromptSizer(count)
        self.dataset: list[Conversation] | None = None
        if self.spec.dataset is not None:
            if scenario.root is None:
                raise WorkloadError(f"{scenario.name}: a dataset path needs the scenario file's directory")
            self.dataset = load_sharegpt(scenario.root / self.spec.dataset)
            self.rng.shuffle(self.dataset)
        self._base: int | None = None

    @property
    def base(self) -> int:
        if self._base is None:
            self._base = self.count("")
        return self._base

    def input_lengths(self, n: int) -> list[int]:
        s = self.spec
        if s.input_len is not None and s.input_len.dist != "dataset":
            return draw_lengths(s.input_len, n, self.rng)
        return [int(s.prompt_tokens or 0)] * n

    def output_lengths(self, n: int, replies: list[str] | None = None) -> list[int]:
        s = self.spec
        if s.output_len is None:
            return [int(s.max_tokens)] * n  # type: ignore[arg-type]
        if s.output_len.dist == "dataset":
            assert replies is not None
            return [_text_tokens(self.count, r, self.base) if r.strip() else int(s.max_tokens or 16) for r in replies]
        return draw_lengths(s.output_len, n, self.rng)

    def build(self, n: int, first_index: int, step: int) -> tuple[list[RequestSpec], dict[int, tuple[int | None, int]]]:
        """``n`` requests indexed first_index, first_index+step, ... with their asked (prompt, output) lengths."""
        index = [first_index + step * i for i in range(n)]
        if self.spec.turns is not None:
            return self._multi_turn(n, index)
        if self.dataset is not None:
            return self._from_dataset(n, index)
        return self._synthetic(n, index)

    def _finish(self, index: list[int], bodies: list[dict], prompts: list[int | None], outputs: list[int]):
        specs = [RequestSpec.build(i, self.path, b) for i, b in zip(index, bodies)]
        return specs, {i: (p, o) for i, p, o in zip(index, prompts, outputs)}

    def _synthetic(self, n: int, index: list[int]):
        s = self.spec
        targets, outs = self.input_lengths(n), self.output_lengths(n)
        groups = s.shared_prefix_groups or 0
        prefixes: list[str] = []
        sizers: list[_PromptSizer] = []
        for _ in range(groups):
            prefix = self.sizer(int(s.shared_prefix_tokens), self.rng)  # type: ignore[arg-type]
            prefixes.append(prefix)
            sizers.append(_PromptSizer(lambda t, p=prefix: self.count(p + " " + t if t else p)))
        bodies, prompts = [], []
        for i, (target, out) in enumerate(zip(targets, outs)):
            if groups:
                g = i % groups
                text = prefixes[g] + " " + sizers[g](target, self.rng)
            else:
                text = self.sizer(target, self.rng)
            bodies.append(request_body(self.w, self.model, out, self.ids, prompt=text))
            prompts.append(target)
        return self._finish(index, bodies, prompts, outs)

    def _from_dataset(self, n: int, index: list[int]):
        assert self.dataset is not None
        convs = [self.dataset[i % len(self.dataset)] for i in range(n)]
        texts, replies = [c.turns[0][0] for c in convs], [c.turns[0][1] for c in convs]
        outs = self.output_lengths(n, replies)
        bodies = [request_body(self.w, self.model, o, self.ids, prompt=t) for t, o in zip(texts, outs)]
        prompts: list[int | None] = [self.count(t) for t in texts]
        return self._finish(index, bodies, prompts, outs)

    def _multi_turn(self, n: int, index: list[int]):
        turns = int(self.spec.turns)  # type: ignore[arg-type]
        n_conv = math.ceil(n / turns)
        convs: list[list[tuple[str, str]]] = []
        for c in range(n_conv):
            if self.dataset is not None:
                pairs = list(self.dataset[c % len(self.dataset)].turns)
                while len(pairs) < turns:  # a short entry continues with the next entries' turns
                    pairs += list(self.dataset[(c + len(pairs)) % len(self.dataset)].turns)
                convs.append(pairs[:turns])
            else:
                lengths, outs = self.input_lengths(turns), self.output_lengths(turns)
                convs.append([(self.sizer(t, self.rng), _synthetic_words(o, self.rng)) for t, o in zip(lengths, outs)])
        bodies, prompts, outs_all = [], [], []
        for k in range(turns):  # turn-major: every conversation's turn k before any turn k+1
            for conv in convs:
                if len(bodies) == n:
                    break
                history: list[dict] = []
                for user, reply in conv[:k]:
                    history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply or "ok"}]
                user, reply = conv[k]
                out = (self.output_lengths(1, [reply])[0] if self.spec.output_len is not None
                       else int(self.spec.max_tokens))  # type: ignore[arg-type]
                bodies.append(request_body(self.w, self.model, out, self.ids,
                                    messages=[*history, {"role": "user", "content": user}]))
                prompts.append(None)  # the counter sizes one message; a history's count is not checked
                outs_all.append(out)
        return self._finish(index, bodies, prompts, outs_all)


def prepare_shaped(scenario: Scenario, workload: Workload, model: str, count: CountFn,
                   return_token_ids: bool = False, trial: int = 0) -> PreparedWorkload:
    """Build a shaped scenario's requests (warm-up first), each trial a new draw (trials stay independent).

    Warm-up requests come from their own draw (their own prefixes), so the
    measured requests never find their prefixes cached by the warm-up.
    """
    warm = _Builder(scenario, workload, model, count, return_token_ids, trial=-1 - trial)
    warmup, _ = warm.build(workload.warmup_requests, -1, -1) if workload.warmup_requests else ([], {})
    builder = _Builder(scenario, workload, model, count, return_token_ids, trial)
    specs, expected = builder.build(workload.num_requests, 0, 1)
    return PreparedWorkload(specs=specs, warmup=warmup, expected=expected)
