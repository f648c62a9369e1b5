"""Endpoints as deployed, against the reference engine on loopback (real processes, real HTTP).

The sim stands in for a deployed server: ``--api-key`` (a bearer token, as
vLLM's ``--api-key``), ``--check-model`` (404 for a model it does not serve,
as vLLM answers) and ``--no-tokenize`` (an engine without /tokenize). Checked:
the served model name is found or taken as given; a token from the
environment reaches every request and never any file, line or message; each
failure names its cause (refused port, /v1 URL, 401, unknown model with the
served names) instead of "no tokenizer"; the tokenizer comes from the local HF
cache when the endpoint cannot count.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from external_sim import external_sim, free_port

from perfgate.config.matrix import (
    Case,
    EngineConfig,
    ModelSpec,
    ScenarioFile,
    expand_sweep,
)
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.endpoint import (
    EndpointAuth,
    EndpointError,
    EndpointProbe,
    choose_model,
    diagnose,
    endpoint_auth,
)
from perfgate.engines.pool import Target, TargetPool
from perfgate.engines.tinymodel import ensure_tiny_model
from perfgate.measure.trial import run_trial
from perfgate.measure.workload import NoTokenizerError
from perfgate.schema.result import EngineInfo
from perfgate.session import PerfSession, Settings

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "fixtures" / "models" / "tiny-llama.yaml"
SERVED = "org/served-model"


def sim(*flags: str, model: str = SERVED):
    """A sim started as a deployed endpoint would be: by someone else, not by perfgate's pool."""
    return external_sim(*flags, model=model, itl_ms="1")


def _scenario(api: str = "completions", **kw):
    # max_coalesced_fraction: at the sim's 1 ms ITL a busy client reads several events at once; not tested here
    spec = dict(name=f"ep-{api}", api=api, num_requests=6, prompt_tokens=12, max_tokens=4, concurrency=2,
                warmup_requests=1, seed=3, max_coalesced_fraction=1.0)
    spec.update(kw)
    return expand_sweep(ScenarioFile(**spec))[0]


def _external(url: str) -> EngineConfig:
    return EngineConfig(id="endpoint", kind="external", base_url=url)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return ensure_tiny_model(RECIPE, tmp_path_factory.mktemp("models"))


@pytest.fixture
def hf_cache(tmp_path, tiny, monkeypatch):
    """A local HF hub cache holding the tiny model's tokenizer as ``perfgate/tiny`` (the layout huggingface_hub
    writes: refs/main -> snapshots/<commit>/...)."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--perfgate--tiny"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny / name, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return snap


# --------------------------------------------------------------------------- auth from the environment


def test_auth_header_forms_and_a_repr_without_the_value():
    auth = endpoint_auth(None, {"PERFGATE_ENDPOINT_TOKEN": "tok-123"})
    assert auth.headers() == {"Authorization": "Bearer tok-123"}
    assert endpoint_auth(None, {"PERFGATE_ENDPOINT_TOKEN": "Bearer tok-123"}).headers() == {"Authorization": "Bearer tok-123"}
    assert endpoint_auth("MY_KEY", {"MY_KEY": "X-Api-Key: tok-123"}).headers() == {"X-Api-Key": "tok-123"}
    assert endpoint_auth(None, {}) is None  # nothing set, nothing sent
    for shown in (repr(auth), str(auth), repr(Target("http://x", ModelRef("m", "m"), EngineInfo(name="e"), auth=auth))):
        assert "tok-123" not in shown
    assert repr(auth) == "EndpointAuth(Authorization from $PERFGATE_ENDPOINT_TOKEN)"
    assert auth.redact('echo: "Bearer tok-123", tok-123') == 'echo: "***", ***'  # a server quoting it back
    with pytest.raises(EndpointError, match=r"^environment variable MY_KEY \(the endpoint's auth token\) is not set"):
        endpoint_auth("MY_KEY", {})
    with pytest.raises(EndpointError, match="control or non-ASCII") as info:
        endpoint_auth("MY_KEY", {"MY_KEY": "tok\n-123"})
    assert "tok" not in str(info.value).replace("token", "")


def test_token_reaches_every_request_and_no_file_line_or_message(tmp_path, perf_project):
    """`pytest perf --perf-endpoint URL` with the token in $PERFGATE_ENDPOINT_TOKEN against a sim that refuses
    any request without it: the run completes (so /tokenize, /metrics, /version and every load request carried
    it), and the token's value is in no file under the results directory and nowhere in the terminal output;
    then a wrong token fails with a line naming the variable, not the value."""
    token = "pgtok-" + secrets.token_hex(12)
    project = perf_project(
        tmp_path / "project",
        "scenarios_dir: scenarios\nengines:\n  sim: {kind: sim}\n"
        "models:\n  key: {path: not-served/at-all}\n"
        "runs:\n  - {hardware: cpu, engines: [sim], models: [key], scenarios: [ep-*]}\n",
        {"ep-chat":  # chat: /tokenize with messages, the richest path
         "name: ep-chat\napi: chat\nnum_requests: 6\nprompt_tokens: 12\nmax_tokens: 4\nconcurrency: 2\n"
         "warmup_requests: 1\ntrials: 1\nseed: 3\n"
         "max_coalesced_fraction: 1.0\n"})  # 1 ms ITL: a busy client reads events together; not tested here

    def run(results: str, value: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PERFGATE_ENDPOINT_TOKEN": value, "PERFGATE_MACHINE": "ep-box"}
        return subprocess.run([sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider",
                               "--perf-endpoint", url, "--perf-results", results, *args],
                              cwd=project, capture_output=True, text=True, env=env, timeout=300)

    with sim("--api-key", token, "--check-model") as url:
        ok = run("reports-ok", token, "--perf-endpoint-model", SERVED)
        other = run("reports-other", token)  # the matrix model is not served: its only model is not taken
        wrong_value = "pgtok-" + secrets.token_hex(12)
        wrong = run("reports-wrong", wrong_value)
        misnamed = run("reports-model", token, "--perf-endpoint-model", "other-model")

    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    # The matrix model's id is not served: the endpoint's only model is refused unless named.
    assert other.returncode != 0
    assert (f"endpoint {url} serves one model, '{SERVED}', not 'not-served/at-all' or 'key': not measuring it as "
            f"this case's model (name one with --perf-endpoint-model '{SERVED}' if that is meant)") in other.stdout
    results = sorted((project / "reports-ok" / "results").glob("*.json"))
    assert len(results) == 1
    for path in results:
        doc = json.loads(path.read_text())
        assert doc["status"] == "ok" and doc["summary"]["failed"] == 0
        assert doc["environment"]["model"] == SERVED
        assert doc["workload"]["prompt_tokens_verified"] is True  # /tokenize answered: the header was on it
        assert doc["environment"]["engine"]["version"] == "sim-1"  # so was /version's
        assert doc["server_metrics"], "no /metrics delta: the scrape went without the header"

    assert wrong.returncode != 0
    assert "HTTP 401 on /v1/models: it rejected the Authorization header from $PERFGATE_ENDPOINT_TOKEN" in wrong.stdout

    assert misnamed.returncode != 0
    assert (f"endpoint {url} does not serve model 'other-model'; it serves: {SERVED} (check the name given for "
            "the endpoint's model)") in misnamed.stdout

    files = [p for d in ("reports-ok", "reports-wrong", "reports-model") for p in (project / d).rglob("*")
             if p.is_file()]
    assert any(p.name == "verdicts.json" for p in files) and any(p.suffix == ".html" for p in files)
    for value in (token, wrong_value):
        for p in files:
            assert value.encode() not in p.read_bytes(), f"token value in {p}"
        for proc in (ok, other, wrong, misnamed):
            assert value not in proc.stdout and value not in proc.stderr


def test_missing_or_wrong_token_is_named_without_its_value(tmp_path):
    token = "pgtok-" + secrets.token_hex(12)
    with sim("--api-key", token) as url:
        assert diagnose(url) == (f"endpoint {url} answered HTTP 401 on /v1/models: it wants a token; put it in "
                                 "$PERFGATE_ENDPOINT_TOKEN (sent as 'Authorization: Bearer ...') or name the "
                                 "variable that holds it")
        assert diagnose(url, EndpointAuth("TOK", "Authorization", f"Bearer {token}")) is None
        wrong = EndpointAuth("TOK", "Authorization", "Bearer nope-" + token[::-1])
        session = PerfSession(Settings(results_dir=tmp_path, cache_dir=tmp_path / "cache",
                                       baselines_dir=tmp_path / "b", machine=None, trials=1,
                                       endpoint_auth_env="TOK"))
        os.environ["TOK"] = wrong.headers()["Authorization"]
        try:
            outcome = session.run_case(Case("cpu", _external(url), ModelSpec(SERVED, None, SERVED), _scenario()))
        finally:
            del os.environ["TOK"]
            session.finish()
        assert outcome.status == "failed"
        assert outcome.error.endswith("HTTP 401 on /v1/models: it rejected the Authorization header from $TOK")
        assert token[::-1] not in outcome.error


# --------------------------------------------------------------------------- the model name


def test_model_name_as_given_or_found(tmp_path):
    with sim("--check-model") as url:
        pool = TargetPool(tmp_path / "cache", tmp_path / "logs", endpoint_model=SERVED)
        target = pool.get(_external(url), ModelSpec("key", None, None))
        assert target.model.name == SERVED and not pool.notes
        result = run_trial(target, _scenario("chat"), trial=0, test_id="given", results_dir=tmp_path)
        # every request answered (a 404 would fail the trial); client_bound: a busy box stalled the client
        assert result.status in ("ok", "client_bound") and result.environment.model == SERVED

        # The matrix model's HF id is what the endpoint lists: no option needed, no note.
        found = TargetPool(tmp_path / "cache", tmp_path / "logs")
        assert found.get(_external(url), ModelSpec("key", None, SERVED)).model.name == SERVED and not found.notes

        wrong = TargetPool(tmp_path / "cache", tmp_path / "logs", endpoint_model="other")
        with pytest.raises(EndpointError) as info:
            wrong.get(_external(url), ModelSpec("key", None, SERVED))
        assert str(info.value) == (f"endpoint {url} does not serve model 'other'; it serves: {SERVED} "
                                   "(check the name given for the endpoint's model)")


def test_several_served_models_and_none_matching_lists_them():
    found = EndpointProbe("http://h:1", served=("a", "b"))
    assert choose_model(found, None, ("x/b", "b")) == ("b", None)  # the matrix key, when the id is not listed
    with pytest.raises(EndpointError, match=r"^endpoint http://h:1 serves none of 'org/m', 'm'; it serves: a, b "
                                            r"\(name one with --perf-endpoint-model NAME\)$"):
        choose_model(found, None, ("org/m", "m"))
    assert choose_model(EndpointProbe("http://h:1"), None, (None, "m")) == ("m", None)  # nothing listed: as before
    one = EndpointProbe("http://h:1", served=("other/model",))
    with pytest.raises(EndpointError, match=r"serves one model, 'other/model', not 'org/m' or 'm': not measuring"):
        choose_model(one, None, ("org/m", "m"))  # another model's numbers under this case's name: refused
    assert choose_model(one, "other/model", ("org/m", "m")) == ("other/model", None)  # named: meant


def test_unknown_model_is_the_cause_not_no_tokenizer(tmp_path):
    """The study-D symptom: a server that answers 404 for a model it does not serve, and a request naming
    another one, failed with "no /tokenize endpoint" although the endpoint has one."""
    with sim("--check-model") as url:
        target = Target(url, ModelRef("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
                        EngineInfo(name="external", base_url=url))
        with pytest.raises(NoTokenizerError) as info:
            run_trial(target, _scenario("chat"), trial=0, test_id="x", results_dir=tmp_path)
        assert str(info.value) == (f"endpoint {url} does not serve model 'llama-3.1-8b-instruct'; it serves: "
                                   f"{SERVED} (pass the served name)")
        cli = subprocess.run([sys.executable, "-m", "perfgate", "load", url, "--model", "wrong", "--out",
                              str(tmp_path / "o")], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"perfgate: endpoint {url} does not serve model 'wrong'; it serves: {SERVED} (pass the served name)"
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- wrong URL, nothing listening


def test_url_ending_in_v1_and_a_closed_port(tmp_path):
    with sim() as url:
        pool = TargetPool(tmp_path / "cache", tmp_path / "logs")
        with pytest.raises(EndpointError) as info:
            pool.get(_external(url + "/v1/"), ModelSpec(SERVED, None, None))
        assert str(info.value) == (f"endpoint {url}/v1 ends in /v1: give the server's base URL, {url} "
                                   "(perfgate adds /v1/completions, /tokenize and /metrics itself)")
    port = free_port()  # nothing listens on it
    closed = f"http://127.0.0.1:{port}"
    assert diagnose(closed) == (f"cannot connect to {closed}: connection refused (nothing listens on "
                                f"127.0.0.1:{port}; is the server up?)")
    with pytest.raises(EndpointError, match="connection refused"):
        TargetPool(tmp_path / "cache", tmp_path / "logs").get(_external(closed), ModelSpec("m", None, None))


# --------------------------------------------------------------------------- counting without /tokenize


def _added_tokens(model_dir: Path, api: str) -> int:
    """Tokens the tiny tokenizer counts around a prompt's words, which the sim (counting words) never sees: BOS,
    and for chat the rest of the chat template (role markers, newline), rendered here with jinja2."""
    import jinja2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    words = "x y"
    bare = len(tok.encode(words, add_special_tokens=False).ids)
    if api == "chat":
        text = jinja2.Environment().from_string(config["chat_template"]).render(
            messages=[{"role": "user", "content": words}], add_generation_prompt=True, bos_token=config["bos_token"])
        return len(tok.encode(text, add_special_tokens=False).ids) - bare
    return len(tok.encode(words).ids) - bare


def test_no_tokenize_falls_back_to_the_hf_cache_by_model_id(tmp_path, hf_cache):
    with sim("--no-tokenize") as url:
        target = Target(url, ModelRef(SERVED, "perfgate/tiny"), EngineInfo(name="external", base_url=url))
        for api in ("completions", "chat"):  # chat: through the tiny model's chat template
            # The sim counts words, the fallback (the tiny tokenizer) counts tokens: its prompts of 12 tokens reach
            # the sim as 12 minus the tokens it adds around the words (BOS; chat: the template too). That known
            # error is the tolerance, and each prompt must land exactly there: 12 words would mean the prompts
            # were not sized by this tokenizer (or, for chat, not through its template).
            extra = _added_tokens(hf_cache, api)
            result = run_trial(target, _scenario(api, prompt_tokens_tolerance=extra / 12), trial=0,
                               test_id=f"fallback-{api}", results_dir=tmp_path)
            # client_bound: a busy 2-core box stalled the client; the fallback tokenizer is what is tested here
            assert result.status in ("ok", "client_bound") and result.workload.prompt_tokens_verified is False
            assert [q.prompt_tokens for q in result.requests] == [12 - extra] * 6, api
            assert result.delivery.checked_requests == 6 and result.delivery.prompt_mismatches == 0

        missing = Target(url, ModelRef(SERVED, "perfgate/absent"), EngineInfo(name="external", base_url=url))
        with pytest.raises(NoTokenizerError) as info:
            run_trial(missing, _scenario(), trial=0, test_id="none", results_dir=tmp_path)
    assert str(info.value) == (f"{url}: cannot count prompt tokens: /tokenize answered HTTP 404, and no local "
                               "tokenizer.json (looked in the local HF cache for 'perfgate/absent', the local HF "
                               f"cache for '{SERVED}'); cannot build exact-length prompts")


def test_chat_on_an_engine_whose_tokenize_takes_prompts_only_uses_the_template(tmp_path, tiny):
    """SGLang's /tokenize takes a prompt, not messages: chat prompts are sized with the chat template here.
    The sim serves /tokenize (messages included) and stands in for SGLang's API shape; with SGLang's declared
    capabilities the trial must not ask it to count messages."""
    with sim() as url:
        target = Target(url, ModelRef(SERVED, str(tiny)), EngineInfo(name="sglang", base_url=url),
                        capabilities=get_adapter("sglang").capabilities)
        # the sim counts words, not the template's tokens: 12 tokens through the template are 12 minus the
        # template's own tokens in words, that known error being the tolerance
        extra = _added_tokens(tiny, "chat")
        chat = run_trial(target, _scenario("chat", prompt_tokens_tolerance=extra / 12), trial=0, test_id="sg-chat",
                         results_dir=tmp_path)
        completions = run_trial(target, _scenario(), trial=0, test_id="sg-completions", results_dir=tmp_path)
    assert chat.status in ("ok", "client_bound") and chat.workload.prompt_tokens_verified is False
    assert [q.prompt_tokens for q in chat.requests] == [12 - extra] * 6 and chat.delivery.prompt_mismatches == 0
    assert completions.workload.prompt_tokens_verified is True  # prompts it can count
    assert [q.prompt_tokens for q in completions.requests] == [12] * 6  # counted by the sim itself: exact
