"""Package specs and package lists: the one parser of ``name==version`` perfgate uses.

An engine spec pins one exact version (``vllm==0.11.0``) or names a URL; an engine environment
reports its distributions as ``Name==version`` lines. Names compare as the packaging standard
normalises them (``flash_attn`` is ``flash-attn`` is ``Flash.Attn``) and versions as versions
(``0.11`` is ``0.11.0``), wherever a spec is checked against what is installed.
"""

from __future__ import annotations

from collections.abc import Iterable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


class ProvisionError(RuntimeError):
    """An engine venv could not be created; the message says which spec and why."""


def parse_spec(spec: str) -> Requirement:
    """Validate an engine spec: ``name==version`` (one exact version) or ``name @ URL``."""
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ProvisionError(f"engine spec {spec!r} is not a pip requirement: {exc}") from exc
    if req.url:
        if list(req.specifier):
            raise ProvisionError(f"engine spec {spec!r}: give `name @ URL` or `name==version`, not both")
        return req
    pins = [s for s in req.specifier if s.operator == "=="]
    if len(pins) != 1 or len(list(req.specifier)) != 1 or "*" in pins[0].version:
        raise ProvisionError(f"engine spec {spec!r} must pin one exact version (vllm==0.11.0) "
                             "or name a URL (vllm @ https://.../vllm-0.11.0-...whl)")
    return req


def spec_version(spec: str) -> str | None:
    """The version a spec pins (None for ``name @ URL``)."""
    req = parse_spec(spec)
    return None if req.url else next(iter(req.specifier)).version


def package_version(packages: Iterable[str], name: str) -> str | None:
    """The version of distribution ``name`` in a ``Name==version`` package list (None: not in it)."""
    wanted = canonicalize_name(name)
    for line in packages:
        found, sep, version = line.partition("==")
        if sep and canonicalize_name(found.strip()) == wanted:
            return version.strip()
    return None


def same_version(a: str, b: str) -> bool:
    """``0.11`` and ``0.11.0`` are one version; strings that are not versions compare as written."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def check_installed(spec: str, packages: Iterable[str], where: str) -> None:
    """The distribution ``spec`` names is in ``packages`` at the version it pins, else a ProvisionError
    saying what ``where`` (a wheel, an environment) has instead."""
    req, version = parse_spec(spec), spec_version(spec)
    found = package_version(packages, req.name)
    if found is None:
        raise ProvisionError(f"{where} has no distribution named {req.name} ({spec})")
    if version is not None and not same_version(found, version):
        raise ProvisionError(f"{where} has {req.name}=={found}, not the version {spec} names")
