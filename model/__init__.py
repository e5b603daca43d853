"""The decoder: config, layers, weights in and out, tokenizer, the embedded default.

    from model import DEFAULT_MODEL, load_model, save_pretrained
    net, tok = load_model(DEFAULT_MODEL)     # an embedded name or a Hugging Face directory
    logits = net(torch.tensor([tok.encode("2 + 2 =")]))  # [1, T, vocab]
"""

from .config import ConfigError, ModelConfig
from .embedded import DEFAULT_MODEL, EMBEDDED_MODELS, SMALL_MODEL
from .loading import build_model, load_model, random_model, save_pretrained
from .tokenizer import Tokenizer, TokenizerError
from .transformer import Transformer
from .vocab import add_tokens_with_mean_init
from .weights import WeightsError

__all__ = [
    "DEFAULT_MODEL", "EMBEDDED_MODELS", "SMALL_MODEL", "ConfigError", "ModelConfig", "Tokenizer", "TokenizerError", "Transformer",
    "WeightsError", "add_tokens_with_mean_init", "build_model", "load_model", "random_model",
    "save_pretrained",
]
