"""Weights in and out, in the Hugging Face safetensors layout.

Our module names are Hugging Face's without the ``model.`` prefix (the LM head has
none), so a checkpoint maps onto the model by one rule and exports the same way. A
sharded checkpoint (``model.safetensors.index.json``) is read shard by shard straight
into the model's storage, so loading a 7B model never holds two copies.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .transformer import Transformer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_SHARD_BYTES = 4 * 1024**3

# Keys some checkpoints carry that are derived state, not weights.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class WeightsError(ValueError):
    """A checkpoint whose tensors do not fit the config; the message names file and tensor."""


def hf_name(name: str) -> str:
    return name if name.startswith("lm_head.") else f"model.{name}"


def expected_tensors(model: Transformer) -> dict[str, torch.Tensor]:
    """HF tensor name -> the model's parameter it fills (the tied LM head is not separate)."""
    out = {}
    for name, param in model.named_parameters(remove_duplicate=True):
        out[hf_name(name)] = param
    return out


@contextmanager
def _open_safetensors(path: Path):
    """safe_open, with errors that name the file: a truncated or non-safetensors file
    otherwise fails with "incomplete metadata" and no path."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            yield f
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({e}); was it cut short by an interrupted "
                           "download or copy?") from None


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """HF tensor name -> the safetensors file that holds it."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise WeightsError(f"{index}: not a valid safetensors index (needs a 'weight_map' object): {e}") from e
        files = {name: directory / shard for name, shard in weight_map.items()}
        for name, path in files.items():
            if not path.is_file():
                raise WeightsError(f"{index}: tensor '{name}' is in shard '{path.name}', which does not exist")
        return files
    shards = sorted(directory.glob("*.safetensors"))
    if not shards:
        raise WeightsError(f"{directory}: no weights (expected {SINGLE_FILE} or {INDEX_FILE})")
    files = {}
    for shard in shards:
        with _open_safetensors(shard) as f:
            for name in f.keys():
                files[name] = shard
    return files


@torch.no_grad()
def load_weights(model: Transformer, directory: str | Path) -> None:
    """Copies every tensor of the checkpoint into `model` (already materialised)."""
    directory = Path(directory)
    expected = expected_tensors(model)
    files = checkpoint_files(directory)
    tied = model.config.tie_word_embeddings
    by_file: dict[Path, list[str]] = {}
    for name, path in files.items():
        if name.endswith(_IGNORED_SUFFIXES) or (tied and name == "lm_head.weight"):
            continue  # tied checkpoints sometimes store the head anyway; the embedding wins
        if name not in expected:
            raise WeightsError(f"{path}: unexpected tensor '{name}' (not part of a {model.config.architecture})")
        by_file.setdefault(path, []).append(name)
    missing = sorted(set(expected) - {n for names in by_file.values() for n in names})
    if missing:
        raise WeightsError(f"{directory}: missing tensor(s) {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    for path, names in by_file.items():
        with _open_safetensors(path) as f:
            for name in names:
                param = expected[name]
                shape = tuple(f.get_slice(name).get_shape())
                if shape != tuple(param.shape):
                    raise WeightsError(
                        f"{path}: tensor '{name}' has shape {list(shape)}, the config implies {list(param.shape)}"
                    )
                param.copy_(f.get_tensor(name))


def save_weights(model: Transformer, directory: str | Path, dtype: torch.dtype | None = None) -> None:
    """Writes model.safetensors, or numbered shards plus an index past MAX_SHARD_BYTES."""
    directory = Path(directory)
    tensors = {}
    for name, param in expected_tensors(model).items():
        t = param.detach()
        tensors[name] = (t.to(dtype) if dtype is not None else t).contiguous().cpu()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > MAX_SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    metadata = {"format": "pt"}  # transformers checks this tag
    if len(shards) == 1:
        save_file(shards[0], str(directory / SINGLE_FILE), metadata=metadata)
        (directory / INDEX_FILE).unlink(missing_ok=True)
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        shard_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / shard_name), metadata=metadata)
        weight_map.update({name: shard_name for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))
    (directory / SINGLE_FILE).unlink(missing_ok=True)
