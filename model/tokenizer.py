"""A thin tokenizer over the `tokenizers` library, plus the checkpoint's chat template.

Reads ``tokenizer.json`` (the fast-tokenizer file every modern checkpoint ships) and
``tokenizer_config.json`` (special-token names and the Jinja chat template). The chat
template is rendered the way transformers renders it (sandboxed Jinja, trim_blocks,
lstrip_blocks), so prompts are byte-identical to what the model was trained on — one of
the defects of RFTT's released code was generating without the template it trained with.
"""

from __future__ import annotations

import json
import functools
from datetime import datetime
from pathlib import Path

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer


class TokenizerError(ValueError):
    pass


def _token_text(value) -> str | None:
    """tokenizer_config.json writes special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class Tokenizer:
    def __init__(self, backend: HFTokenizer, config: dict | None = None, eos_token_id: int | None = None):
        self.backend = backend
        self.config = dict(config or {})
        self.chat_template: str | None = self.config.get("chat_template")
        eos_text = _token_text(self.config.get("eos_token"))
        if eos_text is not None and backend.token_to_id(eos_text) is not None:
            eos_token_id = backend.token_to_id(eos_text)
        self.eos_token_id = eos_token_id
        bos_text = _token_text(self.config.get("bos_token"))
        self.bos_token_id = backend.token_to_id(bos_text) if bos_text else None

    # ---- files ---------------------------------------------------------------------
    @classmethod
    def from_dir(cls, directory: str | Path, eos_token_id: int | None = None) -> "Tokenizer":
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise TokenizerError(f"{path}: missing (this project reads the fast-tokenizer file)")
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as e:  # the Rust error says what is wrong, we say where
            raise TokenizerError(f"{path}: cannot be read by `tokenizers`: {e}") from e
        config = {}
        config_path = directory / "tokenizer_config.json"
        if config_path.is_file():
            try:
                config = json.loads(config_path.read_text())
            except json.JSONDecodeError as e:
                raise TokenizerError(f"{config_path}: not valid JSON ({e})") from e
        # Newer checkpoints keep the template in its own file.
        template_file = directory / "chat_template.jinja"
        if template_file.is_file() and not config.get("chat_template"):
            config["chat_template"] = template_file.read_text()
        return cls(backend, config, eos_token_id)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.backend.save(str(directory / "tokenizer.json"))
        config = dict(self.config)
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        if self.eos_token_id is not None:
            config["eos_token"] = self.id_to_token(self.eos_token_id)
        # Keep transformers' view of added tokens in step with tokenizer.json.
        config["added_tokens_decoder"] = {
            str(i): {"content": t.content, "special": t.special, "normalized": t.normalized,
                     "lstrip": t.lstrip, "rstrip": t.rstrip, "single_word": t.single_word}
            for i, t in sorted(self.backend.get_added_tokens_decoder().items())
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))

    # ---- text <-> ids --------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids for `text`; no BOS/EOS is added (chat templates write their own)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    # ---- special tokens ------------------------------------------------------------
    def special_token_ids(self) -> set[int]:
        return {i for i, t in self.backend.get_added_tokens_decoder().items() if t.special}

    def add_special_tokens(self, tokens: list[str]) -> list[int]:
        """Adds `tokens` as whole, never-split special tokens; returns their ids (existing ones too)."""
        new = [t for t in tokens if self.backend.token_to_id(t) is None]
        if new:
            self.backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
        return [self.backend.token_to_id(t) for t in tokens]

    # ---- chat ----------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise TokenizerError("this tokenizer has no chat_template (tokenizer_config.json)")
        return _compile(self.chat_template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=_token_text(self.config.get("bos_token")) or "",
            eos_token=_token_text(self.config.get("eos_token")) or "",
        )


def _raise(message: str):
    raise TemplateError(message)


@functools.lru_cache(maxsize=8)
def _compile(template: str):
    # Sandboxed: a checkpoint's template is data from the internet, not trusted code.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)  # Llama 3.1's template
    return env.from_string(template)
