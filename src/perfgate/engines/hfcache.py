"""Models in the local Hugging Face cache: present?, which revision, how big - and fetching them on request.

Engines run with ``HF_HUB_OFFLINE=1``: a model must already be in the cache.
Everything here reads the cache only (``huggingface_hub.try_to_load_from_cache``,
never a download), honouring ``HF_HUB_CACHE`` / ``HF_HOME``, except
:func:`fetch` (``perfgate models fetch``), which a runner with hub access
calls on purpose. A gated model's token comes from ``HF_TOKEN`` and is
passed to huggingface_hub only: never printed, logged or written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DTYPE_BYTES = {"float32": 4, "float": 4, "fp32": 4, "float16": 2, "half": 2, "fp16": 2, "bfloat16": 2, "bf16": 2,
               "fp8": 1, "float8": 1, "int8": 1}
# Weights the engines load; other formats of the same weights (original/*.pth, TF, Flax, ONNX) are not fetched.
FETCH_IGNORE = ["original/*", "*.pth", "*.msgpack", "*.h5", "*.ot", "*.onnx", "flax_model*", "tf_model*", "*.gguf"]


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps models: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                     "huggingface")
    return Path(home) / "hub"


def is_hub_id(path: str) -> bool:
    """``org/name`` that is not a local directory."""
    return not Path(path).exists() and path.count("/") == 1 and not path.startswith((".", "/", "~"))


@dataclass(frozen=True)
class CachedModel:
    """A model snapshot in the local cache."""

    repo_id: str
    revision: str  # commit hash of the snapshot
    path: Path  # the snapshot directory

    @property
    def config(self) -> dict:
        try:
            return json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}


def find_cached(repo_id: str, cache_dir: Path | None = None, revision: str | None = None) -> CachedModel | None:
    """The snapshot of ``repo_id`` in the local cache (its config.json is there), or None. Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(cache_dir or hub_cache_dir()),
                                     revision=revision)
    except Exception:  # an invalid repo id
        return None
    if not isinstance(hit, str):
        if revision is not None:
            return None
        # A snapshot fetched by commit has no refs/main: the newest snapshot holding config.json will do.
        folder = Path(cache_dir or hub_cache_dir()) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
        hits = sorted(folder.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        if not hits:
            return None
        hit = str(hits[0])
    snapshot = Path(hit).parent
    return CachedModel(repo_id, snapshot.name, snapshot)


def model_revision(path: str, cache_dir: Path | None = None, revision: str | None = None) -> str | None:
    """The commit of the snapshot a model path resolves to offline (None for a plain local directory);
    ``revision``: the pinned commit the engine serves (the matrix's ``revision:``)."""
    p = Path(path)
    if p.is_dir():
        return p.name if p.parent.name == "snapshots" else None
    cached = find_cached(path, cache_dir, revision) if is_hub_id(path) else None
    return cached.revision if cached else None


def _weights_files(snapshot: Path) -> list[Path]:
    for pattern in ("*.safetensors", "*.bin"):
        files = sorted(f for f in snapshot.rglob(pattern) if "original" not in f.relative_to(snapshot).parts)
        if files:
            return files
    return []


def weights_digest(path: str, cache_dir: Path | None = None, revision: str | None = None) -> str | None:
    """A digest of the weights a model path resolves to, from the cache's own content hashes - no file is read.

    In the HF cache a snapshot's files are links to ``blobs/<hash>`` (the LFS sha256 for weights), so the
    digest over (file name, blob name) changes exactly when the weights do, and a revision that touched only
    the README keeps it: baselines compare across such a revision (docs/statistics.md). None outside the cache.
    """
    import hashlib

    p = Path(path)
    if not p.is_dir():
        cached = find_cached(path, cache_dir, revision) if is_hub_id(path) else None
        p = cached.path if cached else p
    if p.parent.name != "snapshots":
        return None
    files = _weights_files(p)
    if not files or not all(f.is_symlink() for f in files):
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(p)}={Path(os.readlink(f)).name}\n".encode())
    return h.hexdigest()[:16]


def weights_bytes(snapshot: Path) -> int | None:
    """Size of the weights the engine would load: *.safetensors, else *.bin (None when there are neither)."""
    for pattern in ("*.safetensors", "*.bin"):
        files = [f for f in snapshot.rglob(pattern) if "original" not in f.relative_to(snapshot).parts]
        if files:
            return sum(f.stat().st_size for f in files)  # stat follows the snapshot's symlinks to the blobs
    return None


def kv_bytes_per_token(config: dict, dtype_bytes: int) -> int | None:
    """K and V for every layer of one token: 2 x layers x kv heads x head dim x bytes (None: config lacks a field)."""
    text = config.get("text_config") or config
    layers = text.get("num_hidden_layers")
    heads = text.get("num_attention_heads")
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim") or (text.get("hidden_size") // heads if text.get("hidden_size") and heads else None)
    if not (layers and kv_heads and head_dim):
        return None
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def config_dtype_bytes(config: dict, dtype: str | None = None) -> int:
    """Bytes per weight element: the asked dtype, else config.json's torch_dtype, else 2 (fp16/bf16)."""
    for name in (dtype, config.get("torch_dtype"), config.get("dtype")):
        if name and str(name).lower() in DTYPE_BYTES:
            return DTYPE_BYTES[str(name).lower()]
    return 2


def fetch_command(repo_ids: list[str]) -> str:
    """The exact command that puts these models into the local cache (on a runner with hub access)."""
    return "perfgate models fetch " + " ".join(repo_ids)


def fetch(repo_id: str, cache_dir: Path | None = None, revision: str | None = None) -> Path:
    """Download ``repo_id`` into the local cache (config, tokenizer, weights); returns the snapshot directory.

    ``revision`` pins the commit (the matrix's ``revision:``); None fetches the hub's moving main.
    A gated model needs ``HF_TOKEN`` in the environment; the token goes to
    huggingface_hub only, and any error message is scrubbed of it.
    """
    from huggingface_hub import snapshot_download

    token = os.environ.get("HF_TOKEN") or None
    try:
        return Path(snapshot_download(repo_id, cache_dir=str(cache_dir or hub_cache_dir()), token=token,
                                      ignore_patterns=FETCH_IGNORE, revision=revision))
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0]
        if token:
            text = text.replace(token, "***")
        hint = "" if token else " (a gated model needs HF_TOKEN in the environment)"
        raise RuntimeError(f"{repo_id}: {type(exc).__name__}: {text[:300]}{hint}") from None
