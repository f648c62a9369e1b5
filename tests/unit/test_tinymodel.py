"""The tiny model recipe: same recipe => same bytes; shapes consistent; tokenizer and template work."""

import hashlib
import json
from pathlib import Path

import jinja2
import pytest
import yaml
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from perfgate.tinymodel import FILES, build_tiny_model, ensure_tiny_model, model_dir_for

RECIPE = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-llama.yaml"


def _digests(d: Path) -> dict[str, str]:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in FILES}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_model(RECIPE, tmp_path_factory.mktemp("a"))


def test_same_recipe_same_bytes(built, tmp_path):
    again = build_tiny_model(RECIPE, tmp_path / "b")
    assert _digests(built) == _digests(again)


def test_other_seed_other_weights(built, tmp_path):
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["seed"] += 1
    other = tmp_path / "r.yaml"
    other.write_text(yaml.safe_dump(recipe))
    d = build_tiny_model(other, tmp_path / "c")
    assert _digests(d)["model.safetensors"] != _digests(built)["model.safetensors"]
    assert model_dir_for(other, tmp_path) != model_dir_for(RECIPE, tmp_path)


def test_config_matches_tensors(built):
    cfg = json.loads((built / "config.json").read_text())
    t = load_file(str(built / "model.safetensors"))
    assert t["model.embed_tokens.weight"].shape == (cfg["vocab_size"], cfg["hidden_size"])
    kv_dim = cfg["num_key_value_heads"] * cfg["hidden_size"] // cfg["num_attention_heads"]
    assert t["model.layers.0.self_attn.k_proj.weight"].shape == (kv_dim, cfg["hidden_size"])
    assert sum(k.endswith("input_layernorm.weight") for k in t) == cfg["num_hidden_layers"]


def test_tokenizer_round_trips_and_adds_bos(built):
    tok = Tokenizer.from_file(str(built / "tokenizer.json"))
    text = "The river, 42 bridges & a café — unseen words too."
    enc = tok.encode(text)
    assert enc.ids[0] == tok.token_to_id("<s>") == 0
    assert tok.decode(enc.ids, skip_special_tokens=True) == text
    cfg = json.loads((built / "config.json").read_text())
    assert tok.get_vocab_size() == cfg["vocab_size"]  # the word corpus fills fewer merges than the cap


def test_chat_template_renders(built):
    tmpl = json.loads((built / "tokenizer_config.json").read_text())["chat_template"]
    out = jinja2.Template(tmpl).render(messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert out == "<|user|>hi\n<|assistant|>"


def test_ensure_is_idempotent(tmp_path):
    a = ensure_tiny_model(RECIPE, tmp_path)
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(RECIPE, tmp_path) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [a.name]  # no temp dirs left
