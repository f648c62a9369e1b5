"""Engines registered through the ``perfgate.engines`` entry-point group: perfgate's own, and a
third-party package's, installed here as a real distribution (a dist-info with entry_points.txt on
sys.path) so the lookup is the one a ``pip install acme-engine`` would feed."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from perfgate._engine_kinds import BUILTIN, ENTRY_POINT_GROUP, engine_kinds, registrations
from perfgate.config.matrix import EngineConfig, MatrixError, load_engines
from perfgate.engines import AdapterLoadError, ModelRef, UnknownEngineError, get_adapter
from perfgate.engines.base import EngineAdapter, protocol_members

ROOT = Path(__file__).resolve().parents[2]

ACME = '''
from perfgate.engines.base import EngineCapabilities, LaunchPlan


class AcmeAdapter:
    name = "acme"
    distribution = "acme-server"
    gpu_memory_fraction = None
    capabilities = EngineCapabilities(metrics_prefix="acme:")

    def launch_plan(self, python, model, host, port, config):
        flags = [*config.flags, *model.engine_args]
        return LaunchPlan([str(python), "-m", "acme", "--port", str(port), *flags], flags=flags)

    def version_paths(self):
        return ("/version",)
'''


def _install(tmp_path: Path, monkeypatch, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution ``acme-engine 1.0`` on sys.path, as an installer would lay it out."""
    site = tmp_path / "site"
    info = site / "acme_engine-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-engine\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(site))
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    registrations.cache_clear()
    get_adapter.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_registry():
    """What is installed is read once per process: each test starts and leaves a fresh read."""
    registrations.cache_clear()
    get_adapter.cache_clear()
    yield
    registrations.cache_clear()
    get_adapter.cache_clear()


def _matrix(tmp_path: Path, kind: str) -> Path:
    (tmp_path / "scenarios").mkdir(exist_ok=True)
    (tmp_path / "scenarios" / "s.yaml").write_text("name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\n"
                                                   "concurrency: 1\n")
    p = tmp_path / "matrix.yaml"
    p.write_text(f"scenarios_dir: scenarios\nengines:\n  e: {{kind: {kind}}}\nmodels:\n  m: {{path: org/m}}\n"
                 "runs:\n  - {hardware: cpu, engines: [e], models: [m], scenarios: [s]}\n")
    return p


def test_pyproject_registers_the_built_in_adapters_as_the_fallback_table_says():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == BUILTIN
    for kind in BUILTIN:
        adapter = get_adapter(kind)
        assert isinstance(adapter, EngineAdapter) and adapter.name == kind


def test_a_third_party_package_adds_an_engine(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nacme = acme_adapter:AcmeAdapter\n",
             {"acme_adapter": ACME})
    assert "acme" in engine_kinds()
    assert load_engines(_matrix(tmp_path, "acme"))["e"].kind == "acme"  # the matrix accepts the new kind
    adapter = get_adapter("acme")
    assert type(adapter).__name__ == "AcmeAdapter" and adapter.capabilities.metrics_prefix == "acme:"
    plan = adapter.launch_plan(Path("/py"), ModelRef("m", "/m", engine_args=("--x",)), "127.0.0.1", 9,
                               EngineConfig(id="e", kind="acme", flags=("--y",)))
    assert plan.flags == ["--y", "--x"]


def test_a_kind_nobody_registered_is_refused_by_the_matrix_with_the_known_kinds(tmp_path):
    with pytest.raises(MatrixError, match=r"unknown engine kind 'acme'.*(vllm|sim|sglang)"):
        load_engines(_matrix(tmp_path, "acme"))
    with pytest.raises(UnknownEngineError, match="unknown engine kind 'vlm'; did you mean 'vllm'"):
        get_adapter("vlm")


def test_an_adapter_that_fails_to_import_names_its_package(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nacme = acme_broken:AcmeAdapter\n",
             {"acme_broken": "import acme_missing_dependency\n"})
    assert "acme" in engine_kinds()  # listed from metadata alone: nothing imported yet
    with pytest.raises(AdapterLoadError) as err:
        get_adapter("acme")
    message = str(err.value)
    assert "package acme-engine 1.0" in message and "acme = acme_broken:AcmeAdapter" in message
    assert "ModuleNotFoundError" in message and "acme_missing_dependency" in message
    assert "\n" not in message


def test_an_object_that_is_not_an_adapter_is_refused_with_what_it_lacks(tmp_path, monkeypatch):
    source = "class AcmeAdapter:\n    name = 'acme'\n    distribution = None\n"
    _install(tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nacme = acme_half:AcmeAdapter\n",
             {"acme_half": source})
    with pytest.raises(AdapterLoadError, match="acme-engine 1.0.*lacks capabilities, gpu_memory_fraction, "
                                               "launch_plan, version_paths"):
        get_adapter("acme")


def test_an_adapter_whose_name_is_not_its_kind_is_refused(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nacme2 = acme_adapter:AcmeAdapter\n",
             {"acme_adapter": ACME})
    with pytest.raises(AdapterLoadError, match="'acme2'.*loads an adapter named 'acme'"):
        get_adapter("acme2")


def test_a_package_that_claims_a_built_in_kind_is_a_conflict_not_a_silent_swap(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nvllm = acme_adapter:AcmeAdapter\n",
             {"acme_adapter": ACME})
    with pytest.raises(AdapterLoadError, match="'vllm' is registered more than once.*perfgate.*acme-engine 1.0"):
        get_adapter("vllm")


def test_the_protocol_lists_everything_the_pool_and_trial_read():
    assert set(protocol_members()) == {"name", "distribution", "capabilities", "gpu_memory_fraction",
                                       "launch_plan", "version_paths"}


def test_perfgates_own_installed_registration_is_the_built_in_one_not_a_conflict(tmp_path, monkeypatch):
    """An install of perfgate made from this pyproject.toml declares the built-in targets again: the same
    target twice is one registration (it then names the installed package in errors)."""
    _install(tmp_path, monkeypatch, f"[{ENTRY_POINT_GROUP}]\nvllm = {BUILTIN['vllm']}\n", {})
    (found,) = registrations()["vllm"]  # one registration, whichever of the two declarations is read first
    assert found.dist is not None and found.dist.name in ("acme-engine", "perfgate")  # perfgate's own where
    # it is installed with this pyproject's entry points (a fresh venv), the stand-in's where it is not
    assert get_adapter("vllm").name == "vllm"
