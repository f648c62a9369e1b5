"""Reading a YAML config file into its types, every problem one line that names the file and the key.

Shared by the matrix (perf/matrix.yaml) and the scenario files, so a typo reads
the same everywhere: ``matrix.yaml: engines.vllm: unknown key 'flag' (did you mean 'flags'?)``.
"""

from __future__ import annotations

import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfgate._suggest import did_you_mean

STRICT = ConfigDict(extra="forbid")
"""Config types refuse unknown keys: a misspelt option must never be silently ignored."""

FROM_FILE = "perfgate.config.from_file"
"""Validation-context key set while reading a file: the rules only a file must follow (an engine kind perfgate
knows, a model with exactly one source) apply then, not to types a program builds with its own adapter."""

FROM_KEY = Field(json_schema_extra={"from_key": True})
"""Marks a field a file gives as the entry's key (``engines: {vllm-cpu: ...}``), never as a key of its own."""

_EXTRA_KEY = ("extra_forbidden", "unexpected_keyword_argument")  # a BaseModel's, a pydantic dataclass's


class MatrixError(ValueError):
    """A matrix or scenario file that cannot be used; the message names the file."""


class Strict(BaseModel):
    model_config = STRICT


class Frozen(BaseModel):
    """A config group: validated once, then read, never written."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def from_file(info) -> bool:
    """Whether a validator runs on a file's contents (see :data:`FROM_FILE`)."""
    return bool(info.context and info.context.get(FROM_FILE))


def load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise MatrixError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except RecursionError:
        raise MatrixError(f"{path}: not valid YAML (nested too deeply)") from None
    except UnicodeDecodeError as exc:
        raise MatrixError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _strip_none(annotation: object) -> object:
    """``X | None`` -> X; anything else stays."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(annotation) and len(args) == 1 else annotation


def _fields(tp: object) -> dict:
    return (getattr(tp, "__pydantic_fields__", None) or {}) if isinstance(tp, type) else {}


def keys_of(tp: object) -> list[str]:
    """The keys a file may give for ``tp`` (its ``yaml_keys()`` when it routes flat keys, else its fields)."""
    if isinstance(tp, type) and hasattr(tp, "yaml_keys"):
        return list(tp.yaml_keys())
    return [k for k, f in _fields(tp).items() if not (f.json_schema_extra or {}).get("from_key")]


def fields_at(model: type, loc: tuple) -> list[str]:
    """The keys allowed at ``loc`` (a pydantic error location whose last part is the offending key)."""
    current: object = model
    for part in loc[:-1]:
        fields = _fields(current)
        if fields:
            if not (isinstance(part, str) and part in fields):
                return []
            current = _strip_none(fields[part].annotation)
        else:  # dict[str, X] or list[X]: the part is a key or an index, step into X
            args = typing.get_args(current)
            current = _strip_none(args[-1]) if args else None
            if current is None:
                return []
    return keys_of(current)


def loc_str(parts) -> str:
    """A pydantic error location as ``engines.sim.flags``; odd keys (spaces, newlines) quoted, so it stays one line."""
    return ".".join(str(p) if isinstance(p, int) or str(p).isprintable() and " " not in str(p) and str(p) else repr(p)
                    for p in parts) or "(top level)"


def validate(model: type[BaseModel], data: object, path: Path):
    """``data`` (a file's contents) as ``model``, or a :class:`MatrixError` naming ``path`` and the key."""
    try:
        return model.model_validate(data, context={FROM_FILE: True})
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] in _EXTRA_KEY), errors[0])  # a typo explains the rest
        if err["type"] in _EXTRA_KEY and err["loc"]:  # where the file wrote it (a flat key is never unknown inside)
            key = err["loc"][-1]
            raise MatrixError(f"{path}: {loc_str(err['loc'])}: unknown key {key!r}"
                              f"{did_you_mean(key, fields_at(model, tuple(err['loc'])))}") from exc
        where = loc_str(getattr(model, "yaml_loc", lambda loc: loc)(tuple(err["loc"])))  # as the file's flat key
        raise MatrixError(f"{path}: {where}: {' '.join(str(err['msg']).split())}") from exc
