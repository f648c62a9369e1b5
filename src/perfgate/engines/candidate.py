"""A candidate engine given as a spec, derived from a matrix engine entry: "try vllm 0.33.0" without a new entry.

``ENGINE=SPEC`` (``--perf-candidate``, ``perfgate compare --candidate-spec``,
``perfgate preflight --candidate``): the candidate is matrix engine ENGINE with
its install source replaced by SPEC and everything else kept (kind, flags, env,
CPUs, tensor parallel size, timeouts, installer), so the A/B compares the
version and nothing else. SPEC is pip-like: a pinned spec (``vllm==0.33.0``) or
a wheel path/URL, optionally followed by ``--extra-index-url URL`` (repeatable),
``--index-url URL`` and ``--pre``. The install source (spec, wheel, index URLs,
installer arguments) comes from SPEC alone: a base's version-specific index or
wheel would install the old build, and a base's existing environment (``python``)
is the old build by definition.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable, Mapping

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from perfgate.config.matrix import Case, EngineConfig
from perfgate.engines.specs import ProvisionError, parse_spec, spec_version

_CUDA_TAG = re.compile(r"(?<![a-z0-9])cu\d{3}(?!\d)")


class CandidateError(ValueError):
    """A candidate option that cannot be used; the message says why, in one line."""


def _wheel_spec(wheel: str) -> str:
    """``name==version`` of a wheel file name (the public version: ``+cu129`` matches ``==0.33.0``)."""
    try:  # PEP 427: {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
        name, version, _, _ = parse_wheel_filename(wheel.rsplit("/", 1)[-1].replace("%2B", "+").replace("%2b", "+"))
    except InvalidWheelFilename:
        raise CandidateError(f"{wheel!r} is not a wheel file name (name-version-python-abi-platform.whl)") from None
    return f"{name}=={version.public}"


def derive_candidate(base: EngineConfig, spec: str, taken: Iterable[str] = ()) -> EngineConfig:
    """``base`` with its install source replaced by ``spec`` (see the module docstring); the id is
    ``<base>-<version>`` plus the CUDA tag of a wheel or index (``vllm-gpu-0.33.0-cu129``), and
    ``-candidate`` when the matrix already has that id (``taken``)."""
    try:
        tokens = shlex.split(spec)
    except ValueError as exc:
        raise CandidateError(f"candidate spec {spec!r}: {exc}") from None
    if not tokens:
        raise CandidateError("candidate spec is empty")
    source, rest = tokens[0], tokens[1:]
    index_url, extra, pip_args = None, [], []
    while rest:
        flag = rest.pop(0)
        if flag in ("--extra-index-url", "--index-url") and rest:
            url = rest.pop(0)
            index_url, extra = (url, extra) if flag == "--index-url" else (index_url, [*extra, url])
        elif flag == "--pre":
            pip_args.append(flag)
        else:
            raise CandidateError(f"candidate spec {spec!r}: {flag!r} is not one of --extra-index-url URL, "
                                 "--index-url URL, --pre")
    wheel = source if source.endswith(".whl") else None
    pinned = _wheel_spec(source) if wheel else source
    try:
        version = spec_version(pinned)
        name = canonicalize_name(parse_spec(pinned).name)
    except (ProvisionError, StopIteration, ValueError):
        version, name = None, ""
    if not version:
        raise CandidateError(f"candidate spec {source!r}: pin an exact version (e.g. vllm==0.33.0) or give a wheel")
    base_name = canonicalize_name(parse_spec(base.spec).name) if base.spec else None
    if base_name and name != base_name:
        raise CandidateError(f"candidate {pinned!r} is not the package of {base.id} ({base.spec}): a candidate "
                             "changes the version, not the engine")
    tag = next((m.group(0) for text in (wheel or "", index_url or "", *extra)
                for m in _CUDA_TAG.finditer(text.lower())), None)
    cid = f"{base.id}-{version}" + (f"-{tag}" if tag else "")
    if cid in set(taken):
        cid += "-candidate"
    return dataclasses.replace(base, id=cid, spec=pinned, wheel=wheel, index_url=index_url,
                               extra_index_urls=tuple(extra), pip_args=tuple(pip_args), python=None)


def parse_candidate(option: str, engines: Mapping[str, EngineConfig]) -> EngineConfig:
    """``ENGINE=SPEC`` against the matrix's engines (did-you-mean on an unknown ENGINE)."""
    base_id, sep, spec = option.partition("=")
    if not sep or not base_id or spec.startswith("="):
        raise CandidateError(f"{option!r}: give ENGINE=SPEC, e.g. vllm-gpu=vllm==0.33.0")
    if base_id not in engines:
        from perfgate._suggest import did_you_mean

        raise CandidateError(f"{base_id!r} is not an engine of the matrix{did_you_mean(base_id, engines, 'defined')}")
    return derive_candidate(engines[base_id], spec.strip(), taken=engines)


def with_candidate(cases: list[Case], base_id: str, candidate: EngineConfig) -> list[Case]:
    """``cases`` plus the candidate's: each case of the base engine again, with the candidate engine (never
    optional: the candidate was asked for)."""
    return [*cases, *(dataclasses.replace(c, engine=candidate, optional=False) for c in cases
                      if c.engine.id == base_id)]
