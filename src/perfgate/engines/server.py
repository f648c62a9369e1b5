"""Engine server lifecycle shared by every engine: spawn, readiness, teardown.

The server runs in its own process group on a free loopback port with its
output in a log file. Readiness is /health *and* one real 1-token generation
(health alone turns green before the first request can be served on some
engines). Any failure raises :class:`ServerError`: one line of reason, then the
last lines of the server log. Teardown signals the whole group (SIGTERM, grace,
SIGKILL) and checks that nothing of it is left.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from perfgate._http import NETWORK_ERRORS, probe_version, request
from perfgate.config.matrix import EngineConfig
from perfgate.engines.base import EngineAdapter, LaunchPlan, ModelRef
from perfgate.schema.status import FaultClass

LOG_TAIL_LINES = 30
# Environment variables worth recording with a result (engine tuning knobs).
_RECORDED_ENV_PREFIXES = ("VLLM_", "SGLANG_", "CUDA_", "OMP_", "HF_HUB_OFFLINE", "PERFGATE_")
# Names that hold secrets (PERFGATE_ENDPOINT_TOKEN, VLLM_API_KEY, ...): recorded as set, never by value.
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
SECRET_PLACEHOLDER = "(set; value not recorded)"


def recordable_env(env: dict[str, str], declared: dict[str, str]) -> dict[str, str]:
    """The engine environment worth keeping with a result: the matrix's own variables and tuning knobs,
    with any variable whose name says it holds a secret replaced by a placeholder."""
    return {k: (SECRET_PLACEHOLDER if _SECRET_NAME.search(k) else v) for k, v in sorted(env.items())
            if k in declared or k.startswith(_RECORDED_ENV_PREFIXES)}


class ServerError(RuntimeError):
    """An engine server failed to start, died, or could not be stopped cleanly.

    ``kind`` is its fault class (docs/faults.md), given where it is raised: the raise site knows what happened.
    """

    def __init__(self, reason: str, log_path: Path | None = None, kind: FaultClass = FaultClass.SERVER_ERROR):
        self.reason = reason
        self.log_path = log_path
        self.kind = kind
        tail = log_tail(log_path) if log_path else ""
        message = reason
        if log_path:
            message += f"\n--- last {LOG_TAIL_LINES} lines of {log_path} ---\n{tail}"
        super().__init__(message)


def describe_exit(rc: int) -> str:
    """``code 3``, or ``code -9 (SIGKILL)`` for a process a signal ended."""
    if rc < 0:
        try:
            return f"code {rc} ({signal.Signals(-rc).name})"
        except ValueError:
            pass
    return f"code {rc}"


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port`` (an engine started there would not be ours)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if path is None or not Path(path).exists():
        return "(no log)"
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class EngineServer:
    """A running (or about to run) engine process; ``start()`` it, and ``stop()`` it in a ``finally``."""

    adapter: EngineAdapter
    config: EngineConfig
    model: ModelRef
    python: Path
    log_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    grace_s: float = 15.0
    proc: subprocess.Popen | None = None
    plan: LaunchPlan | None = None
    cold_start_s: float | None = None
    version: str | None = None
    recorded_env: dict[str, str] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None  # a line every progress_every_s while booting
    progress_every_s: float = 15.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "EngineServer":
        """Spawn the server and block until it serves a real request (or fail)."""
        if self.port and port_in_use(self.host, self.port):
            # Readiness would be answered by whatever holds the port, and we would measure it.
            raise ServerError(f"{self.config.id}: port {self.host}:{self.port} is already in use",
                              kind=FaultClass.SERVER_ERROR)
        self.port = self.port or free_port(self.host)
        self.plan = self.adapter.launch_plan(self.python, self.model, self.host, self.port, self.config)
        env = {**os.environ, **self.plan.env}
        self.recorded_env = recordable_env(env, self.plan.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"$ {' '.join(self.plan.command)}\n".encode())
        log.flush()
        t0 = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                self.plan.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,  # own process group: teardown reaches every child
                preexec_fn=(lambda: os.sched_setaffinity(0, self.config.cpus)) if self.config.cpus else None,
            )
        except OSError as exc:
            raise ServerError(f"{self.config.id}: cannot execute {self.plan.command[0]}: {exc}", self.log_path) from exc
        finally:
            log.close()
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.cold_start_s = time.perf_counter() - t0
        self.version = self._probe_version()
        return self

    def _check_alive(self) -> None:
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None:
            raise ServerError(f"{self.config.id}: server exited with {describe_exit(rc)} during boot", self.log_path,
                              kind=FaultClass.ENGINE_CRASHED)

    def _wait_ready(self, t0: float) -> None:
        assert self.plan is not None
        deadline = t0 + self.config.boot_timeout_s
        health = self.base_url + self.plan.health_path
        next_note = t0 + self.progress_every_s
        while True:
            self._check_alive()
            if self.progress is not None and time.perf_counter() >= next_note:
                next_note = time.perf_counter() + self.progress_every_s
                self.progress(f"perfgate: booting {self.config.id}: {time.perf_counter() - t0:.0f}s elapsed "
                              f"(log: {self.log_path})")
            if time.perf_counter() > deadline:
                raise ServerError(
                    f"{self.config.id}: not healthy after {self.config.boot_timeout_s:g}s boot timeout", self.log_path,
                    kind=FaultClass.BOOT_TIMEOUT,
                )
            try:
                status, _ = request("GET", health, timeout=2.0)
                if status == 200:
                    break
            except NETWORK_ERRORS:
                pass
            time.sleep(0.25)
        # One real generation: proves the model is loaded and the scheduler runs.
        while True:
            self._check_alive()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise ServerError(f"{self.config.id}: healthy but first generation did not finish before boot timeout",
                                  self.log_path, kind=FaultClass.BOOT_TIMEOUT)
            try:
                status, body = request(
                    "POST", self.base_url + "/v1/completions",
                    {"model": self.model.name, "prompt": "Hello", "max_tokens": 1, "temperature": 0},
                    timeout=min(remaining, 120.0),
                )
            except NETWORK_ERRORS:
                time.sleep(0.5)
                continue
            if status == 200:
                return
            if status in (502, 503):  # still warming up behind a proxy
                time.sleep(0.5)
                continue
            raise ServerError(
                f"{self.config.id}: first generation returned HTTP {status}: {body[:200].decode(errors='replace')}",
                self.log_path,
            )

    def _probe_version(self) -> str | None:
        return probe_version(self.base_url, self.adapter.version_paths())

    def pause(self) -> None:
        """SIGSTOP the engine's processes: an idle engine that polls would take CPU from the one measured."""
        if self.proc is not None and self.proc.poll() is None:
            _signal_all(self.proc.pid, _group_members(self.proc.pid) | _descendants(self.proc.pid), signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what :meth:`pause` stopped (harmless on a running engine)."""
        if self.proc is not None:
            _signal_all(self.proc.pid, _group_members(self.proc.pid) | _descendants(self.proc.pid), signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM the group, wait ``grace_s``, SIGKILL; raise if any process survives."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: pgid == pid
        members = _group_members(pgid) | _descendants(self.proc.pid)
        _signal_all(pgid, members, signal.SIGCONT)  # a paused engine could not act on SIGTERM
        _signal_all(pgid, members, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s  # one grace period for the whole group, not one per wait
        try:
            self.proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        while _alive(members | _group_members(pgid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _alive(members | _group_members(pgid))
        if left:
            _signal_all(pgid, left, signal.SIGKILL)
            if self.proc.poll() is None:
                self.proc.wait(timeout=10)
            time.sleep(0.2)
        self.proc.poll()
        left = _alive(members | _group_members(pgid))
        self.proc = None
        if left:
            raise ServerError(f"{self.config.id}: processes {sorted(left)} survived SIGKILL", self.log_path,
                              kind=FaultClass.ENGINE_CRASHED)


def _group_members(pgid: int) -> set[int]:
    found = set()
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                found.add(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> set[int]:
    """PIDs that still exist and are not zombies (a zombie holds no resources)."""
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def _signal_all(pgid: int, pids: set[int], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    for pid in pids:  # children that left the group (setsid) still get the signal
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
