"""A sim started as a deployed endpoint would be: by someone else, not by perfgate's pool (a context manager
yielding its URL). Shared by the endpoint tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def external_sim(*flags: str, model: str, itl_ms: str = "1", without_proxy_env: bool = False) -> Iterator[str]:
    """The sim on a free loopback port, serving ``model``; ``without_proxy_env`` starts it without the
    *_proxy variables (a test that sets a dead proxy for the client, not for the server)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not (without_proxy_env and k.lower().endswith("_proxy"))}
    proc = subprocess.Popen([sys.executable, "-m", "perfgate.sim", "--port", str(port), "--model-name", model,
                             "--ttft-base-ms", "2", "--itl-ms", itl_ms, *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**env, "PYTHONPATH": str(ROOT / "src")})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sim {flags} did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
