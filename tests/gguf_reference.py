"""transformers' own GGUF loader, the reference the embedded models are checked against:
the tokenizer and the fp32 model it builds from the very GGUF file we convert."""

import torch
import transformers

from model.embedded import gguf_path


def reference_tokenizer(name: str):
    path = gguf_path(name)
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def reference_model(name: str):
    path = gguf_path(name)
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                             dtype=torch.float32).eval()
