"""Files: atomic writes with ordinary permissions, one validated JSON reader, one slug.

Every document perfgate writes goes through :func:`write_text_atomic` (temp
file + fsync + rename: a reader sees the old file or the new one, never half)
and every schema'd document it reads goes through :func:`read_document` (one
error naming the file, whatever is wrong with it).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

FILE_MODE = 0o644
"""Result, baseline, verdict and report files are shared (CI artifacts, served reports): not mkstemp's 0600."""

M = TypeVar("M", bound=BaseModel)


def _umask() -> int:
    """The process umask without setting it (os.umask would change it for every thread meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_text_atomic(path: Path, payload: str) -> Path:
    """Write ``payload`` to ``path`` atomically, mode :data:`FILE_MODE` less the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number this file may hold")


def read_document(path: Path, model: type[M], schema_version: int, error: type[Exception], what: str) -> M:
    """Read ``path`` as JSON, check its ``schema_version`` and validate it as ``model``.

    Any problem (unreadable, not UTF-8, not JSON, NaN/Infinity, another schema
    version, a field that fails validation) raises ``error`` with one line
    naming the file and the first problem.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise error(f"{path}: not a readable {what} ({exc})") from exc
    except RecursionError:  # nesting deeper than the interpreter's stack: no document of ours looks like that
        raise error(f"{path}: not a readable {what} (nested too deeply)") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != schema_version:
        found = raw.get("schema_version") if isinstance(raw, dict) else type(raw).__name__
        raise error(f"{path}: {what} schema_version {found!r}, this perfgate reads {schema_version}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) if str(p).isprintable() and str(p) else repr(p) for p in err["loc"]) or "top level"
        raise error(f"{path}: invalid {what} at {where}: {' '.join(str(err['msg']).split())}") from exc


def slug(text: str) -> str:
    """A file-name-safe form of ``text``: lower case; anything but ``a-z 0-9 . _ = , + -`` becomes ``-``."""
    return re.sub(r"[^a-z0-9._=,+-]+", "-", str(text).lower()).strip("-") or "unknown"
