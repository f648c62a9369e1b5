"""Build perfgate's tiny model from a recipe: deterministic, offline, small.

A Llama-architecture checkpoint (random normal weights from a seeded PCG64)
plus a byte-level BPE tokenizer trained with ``tokenizers`` on a seeded corpus
of English words, written as a Hugging Face model directory that vLLM loads
like any other. Same recipe ⇒ byte-identical files; the directory name carries
a hash of the recipe so a changed recipe never reuses an old build.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from perfgate.config.vocabulary import WORDS

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "perfgate-recipe.json")
SPECIAL = ["<s>", "</s>", "<pad>", "<unk>"]


# Bump when the builder's output changes for an unchanged recipe (file layout,
# tensor init, tokenizer settings): the cache key then changes with it.
BUILDER_VERSION = 1


def _recipe(path: Path) -> tuple[dict, str]:
    """The parsed recipe and the sha256 of everything its build depends on.

    That is the recipe itself, the builder version and the word list the
    tokenizer corpus is drawn from (it lives in ``workload``), so an edit to
    any of them yields a new cache directory instead of a stale build.
    """

    text = Path(path).read_text(encoding="utf-8")
    recipe = yaml.safe_load(text)
    canonical = json.dumps(
        {"recipe": recipe, "builder": BUILDER_VERSION, "words": list(WORDS)},
        sort_keys=True, separators=(",", ":"),
    )
    return recipe, hashlib.sha256(canonical.encode()).hexdigest()


def _dump(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def _train_tokenizer(recipe: dict, out: Path) -> int:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # determinism: one thread
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing


    tcfg = recipe["tokenizer"]
    rng = random.Random(recipe["seed"])
    corpus = [
        " ".join(rng.choice(WORDS) for _ in range(tcfg["words_per_sentence"]))
        for _ in range(tcfg["corpus_sentences"])
    ]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    roles = [f"<|{r}|>" for r in tcfg.get("chat_roles", [])]
    trainer = trainers.BpeTrainer(
        vocab_size=tcfg["vocab_size"], special_tokens=SPECIAL + roles, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)])
    # Re-serialize with sorted keys so the bytes do not depend on dict order.
    _dump(json.loads(tok.to_str()), out / "tokenizer.json")
    _dump(
        {
            "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
            "add_bos_token": True, "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": recipe["architecture"]["max_position_embeddings"],
            "chat_template": tcfg["chat_template"],
        },
        out / "tokenizer_config.json",
    )
    return tok.get_vocab_size()


def _write_weights(recipe: dict, vocab: int, out: Path) -> dict:
    from safetensors.numpy import save_file

    a = recipe["architecture"]
    h, inter, n_layers = a["hidden_size"], a["intermediate_size"], a["num_hidden_layers"]
    heads, kv = a["num_attention_heads"], a["num_key_value_heads"]
    head_dim = h // heads
    dtype = np.dtype(a["dtype"])
    rng = np.random.Generator(np.random.PCG64(recipe["seed"]))

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * a["init_std"]).astype(dtype)

    tensors = {"model.embed_tokens.weight": normal(vocab, h)}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.q_proj.weight"] = normal(heads * head_dim, h)
        tensors[p + "self_attn.k_proj.weight"] = normal(kv * head_dim, h)
        tensors[p + "self_attn.v_proj.weight"] = normal(kv * head_dim, h)
        tensors[p + "self_attn.o_proj.weight"] = normal(h, heads * head_dim)
        tensors[p + "mlp.gate_proj.weight"] = normal(inter, h)
        tensors[p + "mlp.up_proj.weight"] = normal(inter, h)
        tensors[p + "mlp.down_proj.weight"] = normal(h, inter)
        tensors[p + "input_layernorm.weight"] = np.ones(h, dtype)
        tensors[p + "post_attention_layernorm.weight"] = np.ones(h, dtype)
    tensors["model.norm.weight"] = np.ones(h, dtype)
    tensors["lm_head.weight"] = normal(vocab, h)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": n_layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
        "vocab_size": vocab, "max_position_embeddings": a["max_position_embeddings"],
        "rms_norm_eps": a["rms_norm_eps"], "rope_theta": a["rope_theta"], "hidden_act": "silu",
        "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "tie_word_embeddings": False,
        "torch_dtype": a["dtype"],
    }
    _dump(config, out / "config.json")
    _dump({"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2, "do_sample": False}, out / "generation_config.json")
    return config


def build_tiny_model(recipe_path: Path, out_dir: Path) -> Path:
    """Write the model directory for ``recipe_path`` into ``out_dir`` (created)."""
    recipe, digest = _recipe(recipe_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = _train_tokenizer(recipe, out_dir)
    _write_weights(recipe, vocab, out_dir)
    _dump({"name": recipe["name"], "recipe_sha256": digest, "builder_version": BUILDER_VERSION}, out_dir / "perfgate-recipe.json")
    # World-readable (safetensors writes 0600, mkdtemp makes 0700): an engine
    # in a container may run as another user.
    for f in FILES:
        os.chmod(out_dir / f, 0o644)
    os.chmod(out_dir, 0o755)
    return out_dir


def model_dir_for(recipe_path: Path, cache_dir: Path) -> Path:
    recipe, digest = _recipe(recipe_path)
    return Path(cache_dir) / f"{recipe['name']}-{digest[:12]}"


def ensure_tiny_model(recipe_path: Path, cache_dir: Path) -> Path:
    """The cached build of the recipe, building it atomically if absent (race-safe)."""
    final = model_dir_for(recipe_path, cache_dir)
    if _complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build_tiny_model(recipe_path, tmp)
        if final.exists() and not _complete(final):  # an incomplete leftover (never made by us: we rename whole dirs)
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)  # atomic; fails if another process's rename got there first
        except OSError:
            if not _complete(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _complete(d: Path) -> bool:
    return all((d / f).is_file() for f in FILES)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m perfgate.engines.tinymodel RECIPE OUT_DIR", file=sys.stderr)
        return 2
    print(build_tiny_model(Path(args[0]), Path(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
