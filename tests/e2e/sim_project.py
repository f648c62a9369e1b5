"""The one-engine sim project the e2e gate tests run the real plugin on (each adds its scenario `gate`)."""

MATRIX = """
scenarios_dir: scenarios
engines:
  sim:
    kind: sim
    flags: [--ttft-base-ms, "40", --itl-ms, "4", --jitter-ms, "0.3", --seed, "1"]
    boot_timeout_s: 30
models:
  sim-model: {path: sim-model}
runs:
  - hardware: cpu
    engines: [sim]
    models: [sim-model]
    scenarios: [gate]
"""
