"""Local token counting: tokenizer files from a directory or the local HF cache, chat templates rendered as
transformers renders them. Truth: the tiny model's recipe (its template is known text) and hand-rendered
templates exercising each rule of transformers' environment. The comparison with vLLM's own /tokenize on
chat messages is in tests/integration/test_vllm_cpu.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perfgate.engines.tinymodel import ensure_tiny_model
from perfgate.measure.tokenizer import (
    ChatTemplateError,
    find_model_file,
    load_tokenizer,
    render_chat_template,
    where_looked,
)

RECIPE = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-llama.yaml"
USER = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return ensure_tiny_model(RECIPE, tmp_path_factory.mktemp("models"))


def _cache(root: Path, repo: str, files: dict[str, Path | str], ref: str | None = "main") -> Path:
    folder = root / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "c0ffee"
    snap.mkdir(parents=True)
    for name, src in files.items():
        if isinstance(src, Path):
            shutil.copy(src, snap / name)
        else:
            (snap / name).write_text(src)
    if ref:
        (folder / "refs").mkdir()
        (folder / "refs" / ref).write_text("c0ffee")
    return snap


def test_tiny_model_chat_is_its_template_then_tokens_without_added_specials(tiny):
    tok = load_tokenizer([str(tiny)])
    assert tok.render_chat(USER) == "<s><|user|>hello world\n<|assistant|>"  # the recipe's template, BOS from it
    rendered_ids = tok.tokenizer.encode("<s><|user|>hello world\n<|assistant|>", add_special_tokens=False).ids
    assert rendered_ids[0] == tok.tokenizer.token_to_id("<s>") and rendered_ids.count(rendered_ids[0]) == 1
    assert tok.count_chat("hello world") == len(rendered_ids)  # one BOS: none added on top of the template's
    assert tok.count("hello world") == tok.count("hello world", special_tokens=False) + 1  # completions: BOS added
    assert tok.count_fn("chat")("hello world") == tok.count_chat("hello world")


def test_transformers_environment_rules():
    # trim_blocks + lstrip_blocks: block tags leave no newline or indentation behind
    t = "{% for m in messages %}\n    {% if m %}{{ m['role'] }}: {{ m['content'] }}{% endif %}\n{% endfor %}"
    assert render_chat_template(t, USER) == "user: hello world"  # plain jinja2: "\n    user: hello world\n"
    # tojson keeps non-ASCII and takes json.dumps' arguments
    assert render_chat_template("{{ messages | tojson }}", [{"role": "user", "content": "é"}]) == \
        '[{"role": "user", "content": "é"}]'
    assert render_chat_template("{{ messages[0] | tojson(indent=1) }}", USER) == \
        '{\n "role": "user",\n "content": "hello world"\n}'
    # special tokens and add_generation_prompt as variables; an unknown variable renders as nothing
    t = "{{ bos_token }}{{ messages[0].content }}{% if add_generation_prompt %}<gen>{% endif %}{{ nothing }}"
    assert render_chat_template(t, USER, {"bos_token": "<B>"}) == "<B>hello world<gen>"
    assert render_chat_template(t, USER, {"bos_token": "<B>"}, add_generation_prompt=False) == "<B>hello world"
    # {% generation %} (assistant masks) renders its body; loop controls are on
    assert render_chat_template("{% generation %}x{% endgeneration %}", USER) == "x"
    assert render_chat_template("{% for i in [1, 2, 3] %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}",
                                USER) == "1"
    assert len(render_chat_template("{{ strftime_now('%Y-%m-%d') }}", USER)) == 10
    with pytest.raises(ChatTemplateError, match="^chat template: only user and assistant roles$"):
        render_chat_template("{{ raise_exception('only user and assistant roles') }}", USER)
    with pytest.raises(ChatTemplateError):  # sandboxed: no reaching into Python objects
        render_chat_template("{{ messages.__class__.__mro__[1].__subclasses__() }}", USER)


def test_tokenizer_from_the_hf_cache_never_downloaded(tmp_path, tiny, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    config = json.loads((tiny / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "tool_use", "template": "T"},
                               {"name": "default", "template": "{{ bos_token }}[{{ messages[0].content }}]"}]
    config["bos_token"] = {"content": "<s>", "lstrip": False, "special": True}  # AddedToken form
    snap = _cache(tmp_path, "org/model", {"tokenizer.json": tiny / "tokenizer.json",
                                          "tokenizer_config.json": json.dumps(config)})
    tok = load_tokenizer(["no/such-model", "org/model"])
    assert tok.source == snap / "tokenizer.json"
    assert tok.render_chat(USER) == "<s>[hello world]"
    # chat_template.jinja beside it wins over tokenizer_config.json (newer checkpoints)
    _cache(tmp_path, "org/jinja", {"tokenizer.json": tiny / "tokenizer.json", "chat_template.jinja": "J{{ messages[0].content }}"})
    assert load_tokenizer(["org/jinja"]).render_chat(USER) == "Jhello world"
    # a snapshot fetched by commit (no refs/main) is still found
    _cache(tmp_path, "org/pinned", {"tokenizer.json": tiny / "tokenizer.json"}, ref=None)
    pinned = load_tokenizer(["org/pinned"])
    assert pinned is not None and pinned.chat_template is None
    with pytest.raises(ChatTemplateError, match="^no chat template beside "):
        pinned.count_fn("chat")
    assert load_tokenizer(["org/absent", str(tmp_path / "no-dir")]) is None
    assert find_model_file("org/model", "vocab.json") is None
    assert where_looked(["org/absent", str(tiny)]) == f"the local HF cache for 'org/absent', {tiny}/tokenizer.json"
