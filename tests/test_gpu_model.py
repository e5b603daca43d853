"""The whole decoder on a CUDA device: the Triton serving path and the tree-packed training
path against the dense forward and against transformers, at head sizes the kernels serve
(64 and 128; the CPU tests' tiny families have head_dim 8-16). Skipped without a GPU.

The CPU suite checks the same equalities with the PyTorch references (and the Triton
kernels in the interpreter, at tiny shapes); here the compiled kernels run: the engine's
extend, cascade decode, flat decode, RMSNorm, RoPE and KV store on the GPU.
"""

from __future__ import annotations

import pytest
import torch

from model import load_model
from model.tree_packing import pack_paths
from search.engine import Engine
from search.sampling import SamplingParams
from tests.tiny_models import relative_error, write_tokenizer

GPU_FAMILIES = {
    # head_dim 64, GQA 4:1, untied head: the Qwen2.5-0.5B layout (q/k/v biases) at a small width.
    "qwen2-hd64": ("Qwen2Config", dict(
        vocab_size=1024, hidden_size=512, intermediate_size=1024, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, rope_theta=1000000.0,
        tie_word_embeddings=False, max_position_embeddings=8192, bos_token_id=1, eos_token_id=2)),
    # head_dim 128, GQA 8:1, llama3 RoPE scaling: the Llama-3.1-8B layout at a small width.
    "llama3-hd128": ("LlamaConfig", dict(
        vocab_size=1024, hidden_size=1024, intermediate_size=2048, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=1, rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256},
        tie_word_embeddings=False, max_position_embeddings=8192, bos_token_id=1, eos_token_id=2)),
}
# fp32 runs the same maths in another order (kernels' blocked softmax vs the dense path);
# bf16 rounds every activation to 8 mantissa bits.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import transformers

    out = {}
    for i, (name, (class_name, kwargs)) in enumerate(sorted(GPU_FAMILIES.items())):
        path = tmp_path_factory.mktemp(name)
        torch.manual_seed(100 + i)
        hf = transformers.AutoModelForCausalLM.from_config(getattr(transformers, class_name)(**kwargs),
                                                           dtype=torch.float32)
        with torch.no_grad():  # norms and biases off their defaults, so parity sees them
            for n, p in hf.named_parameters():
                if n.endswith("norm.weight") or n.endswith(".bias"):
                    p.add_(0.1 * torch.randn_like(p))
        hf.save_pretrained(path, safe_serialization=True)
        write_tokenizer(path)
        out[name] = (path, hf.eval())
    return out


def _tokens(g: torch.Generator, n: int) -> list[int]:
    return torch.randint(3, 1024, (n,), generator=g).tolist()


@pytest.mark.gpu
@pytest.mark.parametrize("family", sorted(GPU_FAMILIES))
def test_gpu_dense_forward_matches_transformers(checkpoints, family):
    path, hf = checkpoints[family]
    model, _ = load_model(path, device="cuda")
    tokens = torch.tensor([_tokens(torch.Generator().manual_seed(1), 300)] * 2, device="cuda")
    tokens[1, :7] = 5  # two rows that differ
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf.to("cuda")(tokens).logits
    hf.to("cpu")
    assert relative_error(ours, theirs) <= TOLERANCE[torch.float32]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("cascade", [True, False], ids=["cascade", "flat"])
@pytest.mark.parametrize("family", sorted(GPU_FAMILIES))
def test_gpu_engine_tree_decode_equals_dense_recompute(checkpoints, family, cascade, dtype):
    """Two ragged prompts in one extend; the first forks into three children that share its
    KV (the cascade groups them), each child takes a forced token (an extend over a shared
    prefix), then 12 greedy steps. Every branch's next-token logits equal a dense forward
    of its whole path."""
    model, _ = load_model(checkpoints[family][0], dtype=dtype, device="cuda")
    engine = Engine(model, num_slots=4096, cascade=cascade)
    g = torch.Generator().manual_seed(2)
    root_a, root_b = engine.prefill([_tokens(g, 700), _tokens(g, 37)], seeds=[0, 1])
    children = [engine.fork(root_a, seed=10 + i) for i in range(3)]
    engine.extend(children, [[7 + i] for i in range(3)])
    branches = children + [root_b]
    engine.decode(branches, SamplingParams(temperature=0.0), max_new_tokens=12)
    assert engine.cascade_steps > 0 if cascade else engine.cascade_steps == 0
    with torch.no_grad():
        for b in branches:
            text = torch.tensor([engine.text_tokens(b)], device="cuda")
            dense = model(text)[0, -1].float()
            assert relative_error(b.next_logits.float(), dense) <= TOLERANCE[dtype], (family, b.seed)


@pytest.mark.gpu
@pytest.mark.parametrize("family", sorted(GPU_FAMILIES))
def test_gpu_packed_tree_logprobs_and_gradients_equal_separate_paths(checkpoints, family):
    """train.ppo's packed forward (model(tree=...)) on the GPU: log-probs and every
    parameter's gradient equal the per-path dense passes (fp32)."""
    model, _ = load_model(checkpoints[family][0], device="cuda")
    g = torch.Generator().manual_seed(3)
    prompt, step = _tokens(g, 120), _tokens(g, 30)
    paths = [prompt + step + _tokens(g, 40), prompt + step + _tokens(g, 25), prompt + _tokens(g, 50),
             prompt + step, prompt[:60]]
    weights = [torch.randn(len(p) - 1, generator=g).cuda() for p in paths]

    model.zero_grad(set_to_none=True)
    separate = []
    for p, w in zip(paths, weights):
        tokens = torch.tensor([p], device="cuda")
        logprobs, entropy = model(tokens[:, :-1], targets=tokens[:, 1:], temperature=0.7)
        separate.append(logprobs[0].detach())
        (w * (logprobs[0] + 0.1 * entropy[0])).sum().backward()
    separate_grads = {n: q.grad.clone() for n, q in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    tree = pack_paths(paths).to("cuda")
    token_weights = tree.sum_over_paths([torch.cat([torch.zeros(1, device="cuda"), w]) for w in weights])
    logprobs, entropy = model(tree=tree, temperature=0.7)  # [N]
    (token_weights * (logprobs + 0.1 * entropy)).sum().backward()
    for rows, ref in zip(tree.path_indices, separate):
        assert relative_error(logprobs[rows[1:]].detach(), ref) <= 1e-4, family
    for n, q in model.named_parameters():
        assert relative_error(q.grad, separate_grads[n]) <= 1e-4, (family, n)
