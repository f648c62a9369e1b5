"""An engine environment's software stack, as its own interpreter reports it (never by importing torch).

Asked once after an install (the answer is kept in the venv's marker) and of an existing environment
before it is used: python, torch, the CUDA runtime torch was built for, flashinfer, and every
distribution as a ``Name==version`` line (read with perfgate.engines.specs).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from perfgate.engines.specs import ProvisionError

STACK_QUERY_TIMEOUT_S = 120.0

# Run by the engine's own interpreter: nothing is imported (torch's import takes seconds); torch's
# version.py is a file of plain assignments, read to learn the CUDA runtime torch was built for.
_STACK_SCRIPT = r"""
import importlib.metadata as md, importlib.util, json, os, platform
def ver(*names):
    for n in names:
        try:
            return md.version(n)
        except md.PackageNotFoundError:
            pass
cuda = None
spec = importlib.util.find_spec("torch")
if spec is not None and spec.submodule_search_locations:
    ns = {}
    try:
        with open(os.path.join(list(spec.submodule_search_locations)[0], "version.py")) as fh:
            exec(fh.read(), ns)
        cuda = ns.get("cuda")
    except Exception:
        pass
pk = sorted({"%s==%s" % (d.metadata["Name"], d.version) for d in md.distributions() if d.metadata["Name"]},
            key=str.lower)
print(json.dumps({"python": platform.python_version(), "torch": ver("torch"), "torch_cuda": cuda,
                  "flashinfer": ver("flashinfer-python", "flashinfer"), "packages": pk}))
"""


def query_stack(python: Path | str, timeout_s: float = STACK_QUERY_TIMEOUT_S) -> dict:
    """Ask ``python`` for its software stack: python, torch, torch_cuda, flashinfer, packages (name==version)."""
    try:
        out = subprocess.run([str(python), "-c", _STACK_SCRIPT], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"cannot run {python} to read its software stack: {exc}".splitlines()[0]) from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProvisionError(f"{python} could not report its software stack: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])
