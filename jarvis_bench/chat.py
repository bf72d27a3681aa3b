"""Turning a prompt spec into chat messages and a rendered prompt (shared by backends and training)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .config import Config, PromptSpec


def messages(cfg: Config, prompt: PromptSpec | str) -> list[dict[str, str]]:
    text = prompt if isinstance(prompt, str) else prompt.prompt
    msgs = []
    if cfg.generation.system_prompt:
        msgs.append({"role": "system", "content": cfg.generation.system_prompt})
    msgs.append({"role": "user", "content": text})
    return msgs


def tools(cfg: Config) -> list[dict[str, Any]] | None:
    """The tool catalog in the OpenAI/Hermes schema, or None when the config leaves it out."""
    return [t.to_openai() for t in cfg.tools] if cfg.generation.include_tools else None


def render(tokenizer: Any, msgs: list[dict[str, str]], *, tool_schemas: list[dict[str, Any]] | None,
           enable_thinking: bool) -> str:
    """Apply the tokenizer's chat template; `enable_thinking` reaches templates that read it (Qwen3)."""
    if not getattr(tokenizer, "chat_template", None):
        from .errors import ModelLoadError

        raise ModelLoadError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', 'the model')} has no chat template; "
            "use an instruct/chat model"
        )
    return tokenizer.apply_chat_template(
        msgs, tools=tool_schemas, add_generation_prompt=True, tokenize=False, enable_thinking=enable_thinking
    )


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of a rendered prompt, as every backend that tokenizes itself feeds them to the model.

    The chat template already wrote every special token it wants (Llama, Mistral and Gemma templates
    start with BOS), so none is added: tokenizing with `add_special_tokens=True`, as vLLM does for a text
    prompt, would give those models a second BOS and different answers than the transformers backend."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def decoder(tokenizer: Any) -> Callable[[Sequence[int]], str]:
    """The text of generated token ids, as the scorer must read it: special tokens dropped (end of turn,
    padding, control tokens) except the markers of tool calls and reasoning blocks (`toolcalls.MARKERS`,
    `text.REASONING_BLOCKS`). Mistral's `[TOOL_CALLS]`/`[ARGS]`/`[THINK]` and Llama 4's
    `<|python_start|>` are special tokens: `skip_special_tokens=True` would erase them and leave a call's
    bare JSON, or a reasoning block's text, in the answer."""
    from .text import REASONING_BLOCKS
    from .toolcalls import MARKERS

    kept = {*MARKERS, *(tag for o, c, _ in REASONING_BLOCKS for tag in (o, c))}
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    specials = {i: getattr(t, "content", str(t)) for i, t in added.items() if getattr(t, "special", True)}
    for i in getattr(tokenizer, "all_special_ids", None) or ():
        specials.setdefault(i, str(tokenizer.convert_ids_to_tokens(i)))
    dropped = frozenset(i for i, s in specials.items() if s not in kept)

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode([i for i in ids if i not in dropped], skip_special_tokens=False)

    return decode
