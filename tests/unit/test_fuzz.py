"""Property-based fuzzing of everything that reads what others wrote: the SSE parser, the scenario and matrix
loaders, the result and baseline readers. No input makes them fail with anything but their documented error.

The SSE parser never raises, and how the bytes were cut into socket reads changes only timestamps: the same
bytes in one read or in a thousand give the same events, usage, [DONE] and first error. Example counts are
kept modest (the suite's own run time matters); a failure prints the input that broke it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from perfgate.config.matrix import MatrixError, load_matrix, load_scenario_file
from perfgate.judge.baselines import BaselineError, load_baseline
from perfgate.measure.sse import parse_stream
from perfgate.schema.result import ResultError, read_result

FUZZ = settings(max_examples=200)

# -- SSE ---------------------------------------------------------------------------------------------------

_PIECES = st.sampled_from([
    b"data: ", b"data:", b"\n", b"\r\n", b"\n\n", b"\r", b": ping\n\n", b"event: x\n", b"[DONE]", b"data: [DONE]\n\n",
    b'{"choices":[{"text":" t1","token_ids":[1]}]}', b'{"choices":[{"delta":{"content":"a"}}]}',
    b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}', b'{"error":{"message":"boom"}}',
    b'{"choices":[{"text":', b"\xff\xfe", b"\xe2\x82", b"\xac", b"garbage", b"{", b"}", b"null", b"[1]",
    b'{"choices":[null]}', b'{"choices":"x"}', b'{"usage":{"prompt_tokens":"x"}}', b"id: 1\n", b"retry: 5\n",
])
STREAMS = st.one_of(st.binary(max_size=400), st.lists(_PIECES, max_size=40).map(b"".join))


def _cut(data: bytes, cuts: list[int]) -> list[tuple[float, bytes]]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [(float(i), data[a:b]) for i, (a, b) in enumerate(zip(points, points[1:])) if b > a]


def _content(parsed):
    return ([(e.n_tokens, e.text) for e in parsed.events], parsed.prompt_tokens, parsed.completion_tokens,
            parsed.saw_done, parsed.error)


@FUZZ
@given(STREAMS, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
@example(b"data: [DONE]\r", [12])
@example(b'data: {"choices":[{"text":"\xe2\x82\xac"}]}\n\n', [24])  # a UTF-8 character cut between two reads
@example(b"\r\r\n\x00", [3])  # CRs before an LF, the read cut between them (found by this test)
def test_sse_parser_never_raises_and_read_boundaries_change_only_timestamps(data, cuts):
    whole = parse_stream([(0.0, data)] if data else [])
    split = parse_stream(_cut(data, cuts))
    assert _content(split) == _content(whole)
    times = [e.t for e in split.events]
    assert times == sorted(times) and all(t >= 0 for t in times)  # each event carries a read's timestamp
    assert split.error is None or isinstance(split.error, str)


# -- scenario and matrix loaders ---------------------------------------------------------------------------

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_SCENARIO_KEYS = ["name", "api", "num_requests", "prompt_tokens", "max_tokens", "concurrency", "request_rate",
                  "max_concurrency", "burstiness", "warmup_requests", "trials", "timeout_s", "trial_timeout_s",
                  "sweep", "min_effect", "observe_only", "ab_min_blocks", "typo_key"]
_SWEEPS = st.dictionaries(st.sampled_from(["prompt_tokens", "concurrency", "request_rate", "max_tokens", "seed"]),
                          st.lists(st.one_of(st.integers(-3, 50), st.floats(-1, 50)), max_size=3), max_size=2)
SCENARIOS = st.fixed_dictionaries(
    {"name": st.just("fz")},
    optional={k: (_SWEEPS if k == "sweep" else st.one_of(st.integers(-2, 64), _VALUES)) for k in _SCENARIO_KEYS[1:]},
)


def _write(text: str | bytes, name: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="perfgate-fuzz-"))
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return p


@FUZZ
@given(st.one_of(SCENARIOS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=200),
                 st.binary(max_size=200).map(bytes)))
@example("name: fz\nnum_requests: 1\nprompt_tokens: 1\nmax_tokens: 1\nconcurrency: 1\nsweep: {concurrency: [-1]}\n")
@example("[" * 5000)
@example("name: fz\n" + "a: &a [*a]\n")
def test_scenario_loader_accepts_or_says_why(text):
    path = _write(text, "fz.yaml")
    try:
        points = load_scenario_file(path)
    except MatrixError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    for p in points:  # whatever loads is valid, sweep points included
        s = p.spec
        assert s.num_requests > 0 and s.prompt_tokens > 0 and s.max_tokens > 0 and s.timeout_s > 0
        assert (s.concurrency is None) != (s.request_rate is None)
        assert s.concurrency is None or s.concurrency > 0


_MATRIX = st.fixed_dictionaries({}, optional={
    "scenarios_dir": st.sampled_from(["sc", "nowhere", 3]),
    "engines": st.dictionaries(st.sampled_from(["e", "f"]), st.fixed_dictionaries(
        {"kind": st.sampled_from(["sim", "vllm", "external", "tgi"])},
        optional={"spec": st.text(max_size=5), "base_url": st.text(max_size=5), "flags": _VALUES,
                  "boot_timeout_s": st.one_of(st.floats(-1, 5), _VALUES), "cpus": _VALUES}), max_size=2),
    "models": st.dictionaries(st.sampled_from(["m", "n"]), st.one_of(
        st.fixed_dictionaries({"path": st.text(max_size=5)}), st.fixed_dictionaries({"recipe": st.text(max_size=5)}),
        _VALUES), max_size=2),
    "runs": st.lists(st.fixed_dictionaries({"hardware": st.sampled_from(["cpu", "gpu", "tpu"])}, optional={
        "engines": st.lists(st.sampled_from(["e", "f", "g"]), max_size=2),
        "models": st.lists(st.sampled_from(["m", "n", "o"]), max_size=2),
        "scenarios": st.lists(st.sampled_from(["s*", "fz", "x"]), max_size=2)}), max_size=2),
    "extra": _VALUES,
})


@FUZZ
@given(st.one_of(_MATRIX.map(yaml.safe_dump), st.text(max_size=200)))
def test_matrix_loader_accepts_or_says_why(text):
    path = _write(text, "perf/matrix.yaml")
    (path.parent.parent / "sc").mkdir()
    (path.parent.parent / "sc" / "fz.yaml").write_text(
        "name: fz\nnum_requests: 2\nprompt_tokens: 2\nmax_tokens: 2\nconcurrency: 1\n")
    try:
        load_matrix(path)
    except MatrixError as exc:
        assert "\n" not in str(exc)


# -- result and baseline readers ---------------------------------------------------------------------------

_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                               st.text(max_size=10)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                     max_leaves=20)
_DOCS = st.one_of(
    st.binary(max_size=300).map(bytes),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["schema_version", "test_id", "scenario", "key", "trials", "environment",
                                     "workload", "fingerprint", "provenance", "requests"]), _JSON,
                    max_size=6).map(lambda d: json.dumps({**d, "schema_version": d.get("schema_version", 1)}).encode()),
)


@FUZZ
@given(_DOCS)
@example(b"[" * 100_000)
@example(b'{"schema_version": 1e999}')
@example(b'{"schema_version": 2, "key": {}, "x": NaN}')
@example(b'{"schema_version": 1, "test_id": "t", "scenario": "s", "\\n": 1}')  # an odd key stays on one line
def test_result_and_baseline_readers_accept_or_say_why(data):
    path = _write(data, "machine/engine-1/model/scenario.json")
    for reader, error in ((read_result, ResultError), (load_baseline, BaselineError)):
        try:
            reader(path)
        except error as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def test_property_tests_run_under_the_busy_box_profile():
    """tests/conftest.py loads it (unless HYPOTHESIS_PROFILE names another): no per-example deadline, which a
    busy 2-core box misses for reasons that are not the code's."""
    busy = settings.get_profile("busy-box")
    assert busy.deadline is None and HealthCheck.too_slow in busy.suppress_health_check
    chosen = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "busy-box"))
    assert (settings().deadline, settings().suppress_health_check) == (chosen.deadline, chosen.suppress_health_check)
