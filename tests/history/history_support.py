"""What the history tests share: a throwaway PostgreSQL server (Debian's postgresql, as
``make postgres-deps`` installs it) and Result documents of nightly runs.

The server: initdb in a temporary directory, run as nobody when the tests run as root (initdb refuses
root), a free port on 127.0.0.1, password login over TCP, fsync off (the data is thrown away); a watchdog
stops it if the process that started it dies without stopping it.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from perfgate.schema.result import Result

PG_USER, PG_PASSWORD = "perfgate", "s3cret-pw"

WATCHDOG = """
import os, shutil, subprocess, sys, time
pid, cmd, tmp = int(sys.argv[1]), sys.argv[2:-1], sys.argv[-1]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
subprocess.run(cmd, capture_output=True, timeout=60)
shutil.rmtree(tmp, ignore_errors=True)
"""
"""Stops the server if the test process dies without its fixture's teardown (killed, timed out): no orphans."""


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL is not installed (Debian's postgresql package): run `make postgres-deps`")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> list[str]:
    """Run server commands as nobody when we are root (initdb and postgres refuse root)."""
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


class PgServer:
    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="perfgate-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
        pw = self.dir / "pw"
        pw.write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pw, "nobody")
        self._run("initdb", "-D", str(self.data), "-U", PG_USER, f"--pwfile={pw}", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off", "start")
        self.watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), *self._stop_cmd(),
                                          str(self.dir)], start_new_session=True, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _stop_cmd(self) -> list[str]:
        return [*_as_user(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]

    def _run(self, tool: str, *args: str) -> None:
        proc = subprocess.run([*_as_user(), str(self.bin / tool), *args], capture_output=True, text=True,
                              cwd=self.dir, timeout=120)
        if proc.returncode:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            pytest.fail(f"{tool} failed: {proc.stderr.strip()} {log[-2000:]}")

    def url(self, database: str = "postgres", password: str = PG_PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.watchdog.kill()
        self.watchdog.wait()
        subprocess.run(self._stop_cmd(), capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)



def result(*, trial: int = 0, started_at: str = "2026-12-01T00:00:00+00:00", test_id: str = "sim-tiny-chat",
           engine_version: str = "0.32.0", metrics: dict[str, float | None] | None = None, status: str = "ok",
           machine: str | None = "box-1", accelerator: str = "cpu", git_commit: str = "a" * 40,
           flags: tuple[str, ...] = ()) -> Result:
    """One trial's Result as a session writes it (summaries only: the store keeps no per-request records)."""
    return Result.model_validate({
        "test_id": test_id, "scenario": "chat", "trial": trial, "status": status,
        "environment": {
            "engine": {"name": "vllm", "version": engine_version, "spec": "vllm-cpu", "flags": list(flags)},
            "model": "tiny-llama", "hardware": {"accelerator": accelerator, "cpu_model": "Test CPU", "cpu_count": 2},
            "machine": machine, "perfgate_version": "0.1.0", "git_commit": git_commit, "python": "3.11.7",
            "hostname": "host-1", "started_at": started_at,
        },
        "workload": {"scenario": "chat", "num_requests": 50, "prompt_tokens": 32, "max_tokens": 16,
                     "concurrency": 4},
        "client": {"event_loop": "uvloop 0.23.0", "http_client": "raw"},
        "summary": {"completed": 50, "failed": 0, "duration_s": 10.0, "metrics": metrics or {
            "ttft_ms.p50": 20.0, "itl_per_token_ms.p50": 5.0, "e2e_ms.p50": 100.0, "output_throughput": 300.0,
            "error_rate": 0.0}},
    })


def run_results(night: int, scale: float = 1.0, trials: int = 3, **kw) -> list[Result]:
    """Night ``night``'s trials: latencies ``scale`` times the base, throughput divided by it, small fixed jitter."""
    out = []
    for t in range(trials):
        j = 1 + 0.004 * ((night * 7 + t * 3) % 5 - 2)
        out.append(result(trial=t, started_at=f"2026-11-{1 + night // 24:02d}T{night % 24:02d}:00:00+00:00",
                          metrics={"ttft_ms.p50": 20.0 * scale * j, "itl_per_token_ms.p50": 5.0 * scale * j,
                                   "e2e_ms.p50": 100.0 * scale * j, "output_throughput": 300.0 / scale / j,
                                   "error_rate": 0.0}, **kw))
    return out
