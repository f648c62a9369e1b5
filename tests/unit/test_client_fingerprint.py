"""Through a real session on the reference engine: a baseline written with one load client is NOT COMPARED
with a run on another HTTP path (named in the reason), never judged, and compares again with the same client."""

from __future__ import annotations

from perfgate.config.matrix import Case, EngineConfig, ModelSpec, ScenarioFile, expand_sweep
from perfgate.session import PerfSession, Settings

SCENARIO = dict(name="client", num_requests=6, prompt_tokens=4, max_tokens=8, concurrency=2, warmup_requests=1,
                trials=2, timeout_s=5.0, trial_timeout_s=30.0,
                max_coalesced_fraction=1.0)  # a busy client reads events together; not what is tested


def _case(**client) -> Case:
    engine = EngineConfig(id="sim-client", kind="sim", boot_timeout_s=60.0,
                          flags=("--ttft-base-ms", "5", "--itl-ms", "4"))
    return Case("cpu", engine, ModelSpec("m", None, "m"), expand_sweep(ScenarioFile(**SCENARIO, **client))[0])


def _run(tmp_path, name: str, case: Case, **settings):
    session = PerfSession(Settings(results_dir=tmp_path / name, cache_dir=tmp_path / "cache",
                                   baselines_dir=tmp_path / "baselines", machine="client-box", **settings))
    outcome = session.run_case(case)
    session.finish()
    return outcome


def test_a_client_change_against_a_stored_baseline_is_not_compared(tmp_path):
    written = _run(tmp_path, "write", _case(), update_baselines=True)
    assert written.status == "baseline_written", written.judgement
    other = _run(tmp_path, "aiohttp", _case(client_http="aiohttp"))
    assert other.status == "env_mismatch", other.judgement
    assert other.judgement is not None and not other.judgement.verdicts
    assert "client_http_path: 'raw' -> 'aiohttp'" in (other.judgement.reason or "")
    same = _run(tmp_path, "raw", _case())
    assert same.status not in ("env_mismatch", "no_baseline", "not_comparable"), same.judgement
