"""Measurement: workload -> load client -> raw timelines -> SSE parsing -> metrics -> one Result per trial.

The hot path (``loadgen``) records only timestamps and raw bytes; parsing and
metric computation run after the measurement window (``sse``, ``metrics``).
``trial.run_trial`` is the one entry point that runs a whole trial.
"""
