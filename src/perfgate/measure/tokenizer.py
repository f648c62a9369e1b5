"""Counting tokens locally: the model's ``tokenizer.json`` and chat template, from a directory or the HF cache.

Used where the engine cannot count for us: an endpoint without ``/tokenize``,
or a chat scenario on an engine whose ``/tokenize`` takes a prompt but not
messages (SGLang). Files come from a model directory, or from the local
Hugging Face cache by model id (``huggingface_hub.try_to_load_from_cache``):
nothing is ever downloaded, whatever HF_HUB_OFFLINE says.

A chat prompt is counted the way vLLM counts a chat request: the chat template
rendered as transformers' ``apply_chat_template`` renders it (a sandboxed
jinja2 environment with ``trim_blocks`` and ``lstrip_blocks``, the
``raise_exception`` and ``strftime_now`` globals, a ``tojson`` that keeps
non-ASCII, the special tokens as variables, ``add_generation_prompt=True``),
then tokenized without adding special tokens, since the template writes BOS
itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

CountFn = Callable[[str], int]


class ChatTemplateError(ValueError):
    """The model's chat template is missing or cannot be rendered."""


def _looks_like_repo_id(model: str) -> bool:
    return bool(model) and not model.startswith((".", "/", "~")) and model.count("/") <= 1


def _cached_file(repo_id: str, filename: str) -> Path | None:
    """``filename`` of ``repo_id`` from the local HF cache: the ``main`` revision, else the newest snapshot holding it."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    if not folder.is_dir():  # not cached: no need to import the hub client (a third of a second)
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # HFValidationError: not a valid repo id
        return None
    if isinstance(found, str):
        return Path(found)
    # A snapshot fetched by commit has no refs/main; any snapshot holding the file will do.
    hits = sorted((folder / "snapshots").glob(f"*/{filename}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return hits[0] if hits else None


def find_model_file(model: str, filename: str) -> Path | None:
    """``filename`` of ``model``: a directory, or a model id looked up in the local HF cache (never downloaded)."""
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        return path / filename if (path / filename).is_file() else None
    return _cached_file(model, filename) if _looks_like_repo_id(model) else None


def _token_text(value: object) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _select_template(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        return named.get("default")
    return None


@functools.lru_cache(maxsize=8)
def _compile(template: str):
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """``{% generation %}...{% endgeneration %}`` renders its body (transformers marks assistant spans with it)."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(template: str, messages: list[dict], special_tokens: dict[str, object] | None = None,
                         add_generation_prompt: bool = True) -> str:
    """The text ``apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`` would give."""
    import jinja2

    try:
        return _compile(template).render(messages=messages, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **(special_tokens or {}))
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"chat template: {exc}") from None


class LocalTokenizer:
    """A model's tokenizer (``tokenizers``) and chat template, loaded from local files only."""

    def __init__(self, tokenizer_file: Path, config: dict, chat_template: str | None):
        from tokenizers import Tokenizer

        self.source = tokenizer_file
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.chat_template = chat_template
        self.special_tokens: dict[str, object] = {k: t for k, v in config.items()
                                                  if k.endswith("_token") and (t := _token_text(v)) is not None}
        extra = config.get("additional_special_tokens")
        if isinstance(extra, list):
            self.special_tokens["additional_special_tokens"] = [t for v in extra if (t := _token_text(v))]

    def count(self, text: str, special_tokens: bool = True) -> int:
        """Tokens of a plain prompt (``special_tokens``: BOS etc. as the tokenizer's post-processor adds them)."""
        return len(self.tokenizer.encode(text, add_special_tokens=special_tokens).ids)

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if self.chat_template is None:
            raise ChatTemplateError(f"no chat template beside {self.source}")
        return render_chat_template(self.chat_template, messages, self.special_tokens, add_generation_prompt)

    def count_chat(self, text: str) -> int:
        """Tokens of one user message as a chat request: template rendered, no special tokens added on top."""
        rendered = self.render_chat([{"role": "user", "content": text}])
        return len(self.tokenizer.encode(rendered, add_special_tokens=False).ids)

    def count_fn(self, api: str = "completions") -> CountFn:
        """The prompt counter for an API: ``chat`` goes through the chat template (raises if there is none)."""
        if api == "chat":
            self.render_chat([{"role": "user", "content": ""}])  # fail now, not inside the prompt sizer
            return self.count_chat
        return self.count


@functools.lru_cache(maxsize=4)
def _load(tokenizer_file: Path, mtime: float) -> LocalTokenizer:
    folder = tokenizer_file.parent
    config: dict = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            loaded = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
            config = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            config = {}
    template = None
    if (folder / "chat_template.jinja").is_file():  # newer checkpoints keep it in its own file
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    else:
        template = _select_template(config.get("chat_template"))
    return LocalTokenizer(tokenizer_file, config, template)


def load_tokenizer(models: Iterable[str | None]) -> LocalTokenizer | None:
    """The tokenizer of the first of ``models`` (directories or model ids) with a local tokenizer.json, or None.

    Its sibling files (tokenizer_config.json, chat_template.jinja) are read from the same directory (in the HF
    cache: the same snapshot).
    """
    for model in dict.fromkeys(m for m in models if m):
        found = find_model_file(model, "tokenizer.json")
        if found is not None:
            return _load(found, found.stat().st_mtime)
    return None


def where_looked(models: Iterable[str | None]) -> str:
    """Where :func:`load_tokenizer` looked, for an error message."""
    out = []
    for model in dict.fromkeys(m for m in models if m):
        if Path(model).expanduser().is_dir():
            out.append(f"{model}/tokenizer.json")
        elif _looks_like_repo_id(model):
            out.append(f"the local HF cache for {model!r}")
    return ", ".join(out) or "nowhere (no model directory or id)"
