"""What a run is compared along: the series key (what must stay the same) and the environment (what may change).

A series is one case on one machine's hardware: machine name, hardware
identity, engine entry, model entry, scenario, the workload as compared and
the load client. Different hardware is another series (a change of hardware
ends the series rather than showing up as a step). Everything that may change
from night to night - engine version and build, project commit, perfgate
version, driver, CUDA/torch, model revision, engine flags - is recorded per
run, so a change point can be attributed to what changed between its runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from perfgate.judge.baselines import fingerprint
from perfgate.schema.result import Result

ENVIRONMENT_KEYS: tuple[str, ...] = (
    "engine_version", "engine_spec", "engine_flags", "git_commit", "perfgate_version", "gpu_driver", "driver",
    "cuda_driver", "torch", "torch_cuda", "flashinfer", "model_revision", "model_path", "python",
)
"""The per-run environment, in the order a change point names its changes."""


@dataclass(frozen=True)
class SeriesKey:
    machine: str
    hardware: str  # JSON of the hardware identity
    engine_entry: str
    model_entry: str
    scenario: str
    workload: str  # JSON
    client: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def machine_of(result: Result) -> str:
    """The runner's name; an unnamed machine is its host name (a local store belongs to the machine that holds it)."""
    env = result.environment
    return env.machine or f"{env.hostname} (unnamed)"


def hardware_of(result: Result) -> str:
    hw = result.environment.hardware
    return json.dumps({"accelerator": hw.accelerator, "gpu_count": hw.gpu_count, "cpu_model": hw.cpu_model,
                       "cpu_count": hw.cpu_count, "gpu_memory_mib": hw.gpu_memory_mib}, sort_keys=True)


def client_of(result: Result) -> str:
    """The load client's kind (its library versions are environment, not identity)."""
    c = result.client
    if c is None:
        return "unknown"
    return f"{c.event_loop.split()[0]}/{c.http_client}/{c.workers}"


def series_key(result: Result, engine_entry: str | None = None, model_entry: str | None = None) -> SeriesKey:
    """The key of ``result``'s series; ``engine_entry`` / ``model_entry`` are the matrix ids when the caller knows
    them (the session does), else the engine's provisioning spec (or kind) and the served model name."""
    env = result.environment
    return SeriesKey(
        machine=machine_of(result), hardware=hardware_of(result),
        engine_entry=engine_entry or env.engine.spec or env.engine.name, model_entry=model_entry or env.model,
        scenario=result.scenario, workload=str(fingerprint(result)["workload"]),
        client=client_of(result))


def environment_of(result: Result) -> dict[str, str | None]:
    """What may change along a series, as strings (a change point names its changes from these)."""
    env, sw = result.environment, result.environment.software
    return {
        "engine_version": env.engine.version, "engine_spec": env.engine.spec,
        "engine_flags": " ".join(env.engine.flags) or None, "git_commit": env.git_commit,
        "perfgate_version": env.perfgate_version, "gpu_driver": env.hardware.gpu_driver,
        "driver": sw.driver if sw else None, "cuda_driver": sw.cuda_driver if sw else None,
        "torch": sw.torch if sw else None, "torch_cuda": sw.torch_cuda if sw else None,
        "flashinfer": sw.flashinfer if sw else None, "model_revision": sw.model_revision if sw else None,
        "model_path": env.model_path, "python": sw.python if sw and sw.python else env.python,
    }


def run_uid(results: Sequence[Result]) -> str:
    """One run's identity: its trials' test ids, start times, host, engine, hardware and summaries. Recording the
    same results twice (an import of a directory already recorded) finds the run already there instead of adding
    or overwriting it; two different results never share it."""
    parts = sorted("|".join(map(str, (
        r.test_id, r.trial, r.environment.started_at, r.environment.hostname, r.environment.machine,
        r.environment.engine.name, r.environment.engine.version, r.environment.hardware.accelerator,
        r.summary.model_dump_json() if r.summary else None))) for r in results)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def fingerprint_json(result: Result) -> str:
    return json.dumps(fingerprint(result), sort_keys=True)
