"""The session's pool of engine servers, with the reference engine (real processes)."""

from pathlib import Path

import psutil

from perfgate.config.matrix import EngineConfig, ModelSpec
from perfgate.engines.pool import TargetPool

SIM = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "1", "--itl-ms", "1"))
OTHER = EngineConfig(id="sim2", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "2"))
MODEL = ModelSpec("m", None, "m")


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_reuse_restart_and_switch(tmp_path: Path):
    pool = TargetPool(tmp_path / "cache", tmp_path / "logs")
    try:
        a = pool.get(SIM, MODEL)
        assert pool.get(SIM, MODEL) is a  # consecutive tests share the server
        pid_a = a.server.proc.pid
        b = pool.get(SIM, MODEL, fresh=True)  # restart_between_trials
        assert _gone(pid_a) and b.server.proc.pid != pid_a and b.engine.cold_start_s > 0
        pid_b = b.server.proc.pid
        c = pool.get(OTHER, MODEL)  # a different engine config: the previous one is stopped first
        assert _gone(pid_b) and c.engine.version == "sim-1"
        assert (tmp_path / "logs" / "sim2--m.log").exists()
    finally:
        pool.release()


def test_server_that_died_between_trials_is_reported_with_its_log(tmp_path: Path):
    import pytest

    from perfgate.engines.server import ServerError

    pool = TargetPool(tmp_path / "cache", tmp_path / "logs")
    try:
        a = pool.get(SIM, MODEL)
        a.server.proc.kill()
        a.server.proc.wait()
        with pytest.raises(ServerError) as info:
            pool.get(SIM, MODEL)
        first, *rest = str(info.value).splitlines()
        assert first == "sim: server exited with code -9 during the run"
        assert "perfgate sim on 127.0.0.1" in "\n".join(rest)  # the log tail
        with pytest.raises(ServerError, match="not retried"):
            pool.get(SIM, MODEL)
    finally:
        pool.release()
