"""The load client: drives streaming requests and records raw timelines."""

from .loadgen import LoadRun, RequestSpec, run_load

__all__ = ["LoadRun", "RequestSpec", "run_load"]
