"""The public API is the documented list, every name resolves, and importing perfgate stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import perfgate

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _documented() -> set[str]:
    names = set()
    for row in DOC.read_text().splitlines():
        if row.startswith("| `"):
            names.update(re.findall(r"`([A-Za-z_]+)`", row.split("|")[1]))
    return names


def test_all_is_the_documented_list():
    assert set(perfgate.__all__) - {"__version__"} == _documented()


def test_every_public_name_resolves_to_its_definition():
    for name in perfgate.__all__:
        value = getattr(perfgate, name)
        assert value is not None, name
        if name != "__version__":
            assert getattr(value, "__name__", name) == name  # the object itself, not a module or alias


def test_an_unknown_name_is_an_attribute_error():
    try:
        perfgate.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown attribute resolved")


def test_importing_perfgate_loads_nothing_heavy():
    code = ("import sys, perfgate\n"
            "heavy = [m for m in ('numpy', 'scipy', 'matplotlib', 'pydantic', 'sqlalchemy', 'aiohttp')"
            " if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
