"""The tiny model recipe: same recipe => same bytes; shapes consistent; tokenizer and template work."""

import hashlib
import json
from pathlib import Path

import jinja2
import pytest
import yaml
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from perfgate.engines.tinymodel import (
    FILES,
    build_tiny_model,
    ensure_tiny_model,
    model_dir_for,
)

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
    cfg = json.loads((built / "tokenizer_config.json").read_text())
    out = jinja2.Template(cfg["chat_template"]).render(
        messages=[{"role": "user", "content": "time year"}], add_generation_prompt=True, bos_token=cfg["bos_token"])
    assert out == "<s><|user|>time year\n<|assistant|>"
    # Role markers are single special tokens; BOS comes from the template (vLLM adds none to chat prompts).
    tok = Tokenizer.from_file(str(built / "tokenizer.json"))
    ids = tok.encode(out, add_special_tokens=False).ids
    assert ids[:2] == [tok.token_to_id("<s>"), tok.token_to_id("<|user|>")]
    assert ids[-1] == tok.token_to_id("<|assistant|>")
    assert len(ids) == 6  # <s> <|user|> time Ġyear Ċ <|assistant|>


def test_ensure_is_idempotent(tmp_path):
    a = ensure_tiny_model(RECIPE, tmp_path)
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(RECIPE, tmp_path) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [a.name]  # no temp dirs left


def test_ensure_races_to_one_complete_dir(built, tmp_path):
    """Two processes building the same recipe at once: both get the same complete directory."""
    import subprocess
    import sys

    code = "import sys; from pathlib import Path; from perfgate.engines.tinymodel import ensure_tiny_model; " \
           "print(ensure_tiny_model(Path(sys.argv[1]), Path(sys.argv[2])))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(RECIPE), str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    want = model_dir_for(RECIPE, tmp_path)
    assert outs == [str(want)] * 2
    assert [p.name for p in tmp_path.iterdir()] == [want.name]
    assert _digests(want) == _digests(built)
