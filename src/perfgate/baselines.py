"""The baseline store: one human-diffable JSON file per comparison key.

Layout (a reviewer can navigate it and a diff shows what moved)::

    baselines/<hardware>/<engine>-<version>/<model>/<scenario>.json

A file holds the per-trial summary metrics, the environment fingerprint they
were measured under, and provenance. Reads are schema-validated: a corrupt or
old-schema file is a :class:`BaselineError` naming the file, never a silent
pass. Writes are atomic.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .results import Result, write_json_atomic

SCHEMA_VERSION = 1


class BaselineError(Exception):
    """A baseline file that cannot be trusted; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaselineKey(_Strict):
    hardware: str
    engine: str
    engine_version: str
    model: str
    scenario: str


class Provenance(_Strict):
    created_at: str
    git_commit: str | None = None
    perfgate_version: str
    results: list[str] = Field(default_factory=list)  # result files it was made from


class Baseline(_Strict):
    schema_version: int = SCHEMA_VERSION
    key: BaselineKey
    fingerprint: dict[str, str | int | float | bool | None]
    provenance: Provenance
    trials: list[dict[str, float | None]]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._=,+-]+", "-", text.lower()).strip("-") or "unknown"


def path_for(root: Path, key: BaselineKey) -> Path:
    return (Path(root) / slug(key.hardware) / f"{slug(key.engine)}-{slug(key.engine_version)}"
            / slug(key.model) / f"{slug(key.scenario)}.json")


def key_of(result: Result, engine_version: str | None = None) -> BaselineKey:
    env = result.environment
    return BaselineKey(
        hardware=env.hardware.accelerator, engine=env.engine.name,
        engine_version=engine_version or env.engine.version or "unknown",
        model=env.model, scenario=result.scenario,
    )


def fingerprint(result: Result) -> dict[str, str | int | float | bool | None]:
    """What must match for two runs to be comparable (except the engine version)."""
    env, w = result.environment, result.workload
    return {
        "accelerator": env.hardware.accelerator, "gpu_driver": env.hardware.gpu_driver,
        "gpu_count": env.hardware.gpu_count, "cpu_model": env.hardware.cpu_model,
        "cpu_count": env.hardware.cpu_count, "engine": env.engine.name,
        "engine_flags": " ".join(env.engine.flags), "model": env.model,
        "workload": json.dumps(w.model_dump(exclude={"prompt_tokens_verified"}), sort_keys=True),
    }


def load_baseline(path: Path) -> Baseline:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{path}: not a readable baseline ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        found = raw.get("schema_version") if isinstance(raw, dict) else type(raw).__name__
        raise BaselineError(f"{path}: baseline schema_version {found!r}, expected {SCHEMA_VERSION}; "
                            "re-create it with --perf-update-baselines")
    try:
        baseline = Baseline.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise BaselineError(f"{path}: invalid baseline at {'.'.join(map(str, err['loc']))}: {err['msg']}") from exc
    if not baseline.trials:
        raise BaselineError(f"{path}: baseline has no trials")
    return baseline


def find_baseline(root: Path, key: BaselineKey) -> Path | None:
    p = path_for(root, key)
    return p if p.exists() else None


def versions_available(root: Path, key: BaselineKey) -> list[str]:
    """Engine versions with a baseline for this hardware/engine/model/scenario (upgrade comparisons)."""
    hw = Path(root) / slug(key.hardware)
    prefix = f"{slug(key.engine)}-"
    out = []
    for d in sorted(hw.glob(f"{prefix}*")) if hw.exists() else []:
        if (d / slug(key.model) / f"{slug(key.scenario)}.json").exists():
            out.append(d.name[len(prefix):])
    return out


def _medians(trials: list[dict[str, float | None]]) -> dict[str, float]:
    keys = sorted({k for t in trials for k in t})
    out = {}
    for k in keys:
        vals = [t[k] for t in trials if t.get(k) is not None]
        if vals:
            out[k] = float(np.median(vals))
    return out


def save_baseline(root: Path, baseline: Baseline, watch: tuple[str, ...] = ()) -> tuple[Path, list[str]]:
    """Write atomically; return the path and human-readable changes vs the previous file."""
    path = path_for(root, baseline.key)
    changes: list[str] = []
    if path.exists():
        try:
            old = _medians(load_baseline(path).trials)
        except BaselineError as exc:
            old = {}
            changes.append(f"replacing unreadable baseline ({exc})")
        new = _medians(baseline.trials)
        for k in watch or tuple(sorted(new)):
            if k in old and k in new and old[k]:
                pct = (new[k] / old[k] - 1) * 100
                if abs(pct) >= 0.05:
                    changes.append(f"{k}: {old[k]:.4g} -> {new[k]:.4g} ({pct:+.1f}%)")
    else:
        changes.append("new baseline")
    write_json_atomic(path, baseline.model_dump_json(indent=1) + "\n")
    return path, changes
