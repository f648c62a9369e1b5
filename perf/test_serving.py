"""The serving suite: one test per (engine configuration, model, scenario) in perf/matrix.yaml.

Each test runs the scenario's trials against an engine the session booted (or
``--perf-endpoint``), writes one result JSON per trial under the results
directory, and fails with a one-line reason on a failed run, a client-bound
run, or a statistically clear regression against ``baselines/``.
"""


def test_serving(perf_case, perf_run):
    outcome = perf_run(perf_case)
    outcome.check()
