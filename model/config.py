"""Model configuration, read from a Hugging Face ``config.json``.

One dataclass covers the whole Llama family this project supports; the architectures
differ only in a few switches:

| architecture        | q/k/v bias | q/k RMSNorm | notes                                   |
|---------------------|------------|-------------|-----------------------------------------|
| LlamaForCausalLM    | optional   | no          | Llama 3.x (``llama3`` RoPE scaling), SmolLM2 |
| Qwen2ForCausalLM    | yes        | no          | Qwen2 / Qwen2.5                         |
| Qwen3ForCausalLM    | optional   | yes         | per-head RMSNorm on q and k before RoPE |

Tied embeddings (SmolLM2, small Qwens) are a switch of every family.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


class ConfigError(ValueError):
    """A config.json we cannot use; the message names the file and the field."""


@dataclass
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # q/k/v projections carry a bias (always on for Qwen2)
    o_bias: bool = False  # the output projection too (Llama/Qwen3 `attention_bias`; never Qwen2)
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    # Everything else config.json held, written back unchanged on export.
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def model_type(self) -> str:
        return {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}[
            self.architecture
        ]

    @property
    def q_per_kv(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    # ---- reading -------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no config.json (expected a Hugging Face model directory)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object at the top level")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config.json") -> "ModelConfig":
        def need(key: str, kind: type = int):
            if key not in raw or raw[key] is None:
                raise ConfigError(f"{source}: missing field '{key}'")
            value = raw[key]
            if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{source}: field '{key}' must be a positive integer, got {value!r}")
            if kind is float and not isinstance(value, (int, float)):
                raise ConfigError(f"{source}: field '{key}' must be a number, got {value!r}")
            return value

        archs = raw.get("architectures")
        if not archs:
            raise ConfigError(f"{source}: missing field 'architectures' (one of {', '.join(SUPPORTED_ARCHITECTURES)})")
        arch = archs[0]
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ConfigError(
                f"{source}: field 'architectures' is {arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )

        hidden = need("hidden_size")
        heads = need("num_attention_heads")
        kv_heads = raw.get("num_key_value_heads") or heads
        if not isinstance(kv_heads, int) or heads % kv_heads:
            raise ConfigError(
                f"{source}: field 'num_key_value_heads' ({kv_heads!r}) must divide num_attention_heads ({heads})"
            )
        head_dim = raw.get("head_dim") or hidden // heads
        if raw.get("head_dim") is None and hidden % heads:
            raise ConfigError(f"{source}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")

        # transformers >= 5 writes RoPE settings as `rope_parameters`; older files use
        # `rope_theta` + `rope_scaling`. Both describe the same thing.
        rope_params = raw.get("rope_parameters") or {}
        rope_theta = raw.get("rope_theta", rope_params.get("rope_theta", 10000.0))
        rope_scaling = raw.get("rope_scaling")
        if rope_scaling is None and rope_params.get("rope_type", "default") != "default":
            rope_scaling = {k: v for k, v in rope_params.items() if k != "rope_theta"}
        if rope_scaling is not None:
            kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
            if kind not in ("llama3", "default"):
                raise ConfigError(f"{source}: field 'rope_scaling' has type {kind!r}; supported: llama3")
            if kind == "default":
                rope_scaling = None
            else:
                for key in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
                    if key not in rope_scaling:
                        raise ConfigError(f"{source}: field 'rope_scaling.{key}' is missing (llama3 scaling)")

        if raw.get("mlp_bias"):
            raise ConfigError(f"{source}: field 'mlp_bias' is true; biased MLPs are not supported")
        if raw.get("use_sliding_window"):
            raise ConfigError(f"{source}: field 'use_sliding_window' is true; sliding-window attention is not supported")
        if raw.get("hidden_act", "silu") != "silu":
            raise ConfigError(f"{source}: field 'hidden_act' is {raw['hidden_act']!r}; only silu (SwiGLU) is supported")

        known = {
            "architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta",
            "rope_scaling", "rope_parameters", "max_position_embeddings", "tie_word_embeddings",
            "attention_bias", "bos_token_id", "eos_token_id", "model_type", "torch_dtype", "dtype",
        }
        return cls(
            architecture=arch,
            vocab_size=need("vocab_size"),
            hidden_size=hidden,
            intermediate_size=need("intermediate_size"),
            num_hidden_layers=need("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            rope_scaling=rope_scaling,
            max_position_embeddings=int(raw.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            qkv_bias=arch == "Qwen2ForCausalLM" or bool(raw.get("attention_bias", False)),
            o_bias=arch != "Qwen2ForCausalLM" and bool(raw.get("attention_bias", False)),
            qk_norm=arch == "Qwen3ForCausalLM",
            bos_token_id=raw.get("bos_token_id"),
            eos_token_id=raw.get("eos_token_id"),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    # ---- writing -------------------------------------------------------------------
    def to_hf_dict(self, dtype_name: str) -> dict:
        """The config.json that transformers (and this loader) read back."""
        out = dict(self.extra)
        out.update(
            architectures=[self.architecture],
            model_type=self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            rope_scaling=self.rope_scaling,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            hidden_act="silu",
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            torch_dtype=dtype_name,
        )
        if self.architecture != "Qwen2ForCausalLM":  # Qwen2's biases are implied by the architecture
            out["attention_bias"] = self.o_bias
        return out

    def to_dict(self) -> dict:
        return asdict(self)
