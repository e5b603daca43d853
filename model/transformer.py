"""The decoder: token embedding, N pre-norm blocks, final norm, LM head.

Every use of the model runs the same blocks on a packed batch (tokens [N], positions [N])
and differs only in its attention rule (model/layers.py):

- ``model(tokens)`` is the training path on dense sequences: [B, T] packed to B·T rows,
  causal within each row; autograd on, logits for every position;
- ``model(tree=packed)`` is tree-packed training (model/tree_packing.py): a problem's
  search paths in one sequence, each shared token once, attending to its ancestors;
- ``serving_logits`` (model/serving.py) runs the engine's new tokens against the KV pool.

``hidden_states`` / ``tree_hidden_states`` stop before the LM head, so a fused log-prob
kernel can project and reduce the vocabulary chunk by chunk instead of holding
``[tokens, vocab]`` fp32 logits (the largest tensor in RL training at 150k vocabularies).
"""

from __future__ import annotations

import torch
from torch import nn

from kernels.fused_logprobs import fused_logprobs
from kernels.rope_freqs import rope_inv_freq

from .config import ModelConfig
from .layers import Attend, Block, CausalAttention, RMSNorm
from .tree_packing import PackedTree, TreeAttention


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.tie_weights()
        # Not a weight: derived from the config, so it is never saved and is rebuilt
        # (on the right device) whenever the model is materialised.
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)

    def _inv_freq(self) -> torch.Tensor:
        c = self.config
        return rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling)

    def reset_rope(self) -> None:
        """Recomputes the RoPE table (after the model was built on the meta device)."""
        self.inv_freq = self._inv_freq().to(self.embed_tokens.weight.device)

    def tie_weights(self) -> None:
        """SmolLM2 and small Qwens share the embedding with the LM head."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """[vocab, hidden]: what the fused log-prob kernel multiplies hidden states by."""
        return self.lm_head.weight

    def packed_hidden_states(self, tokens: torch.Tensor, positions: torch.Tensor, attend: Attend) -> torch.Tensor:
        """tokens, positions: int64[N]; `attend` says who sees whom -> final normed hidden [N, hidden]."""
        x = self.embed_tokens(tokens)  # [N, H]
        for block in self.layers:
            x = block(x, positions, self.inv_freq, attend)
        return self.norm(x)

    def hidden_states(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: int64[B, T]; positions: int[1 or B, T] (default 0..T-1) -> [B, T, hidden]."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, time], got shape {tuple(tokens.shape)}")
        B, T = tokens.shape
        if positions is None:
            positions = torch.arange(T, device=tokens.device)[None]  # [1, T]
        positions = positions.expand(B, T).reshape(B * T)
        hidden = self.packed_hidden_states(tokens.reshape(B * T), positions, CausalAttention(B))
        return hidden.view(B, T, -1)

    def tree_hidden_states(self, tree: PackedTree) -> torch.Tensor:
        """A packed tree (model/tree_packing.py) -> final normed hidden states [N, hidden]:
        row i has seen exactly token i's path, at the positions that path gives it."""
        return self.packed_hidden_states(tree.tokens, tree.positions, TreeAttention(tree.attention_mask()))

    def forward(self, tokens: torch.Tensor | None = None, positions: torch.Tensor | None = None, *,
                targets: torch.Tensor | None = None, temperature: float = 1.0, tree: PackedTree | None = None):
        """tokens: int64[B, T] -> logits [B, T, vocab] (causal; autograd on).

        With ``targets: int64[B, T]`` it returns ``(logprobs, entropy)``, both fp32[B, T]:
        the log-probability of each target under softmax(logits / temperature) and that
        distribution's entropy, computed chunk by chunk without materialising the logits
        (kernels/fused_logprobs.py). Training calls this form: under FSDP2 only a call of
        the module itself gathers the head's weights, so the head must be used in here.

        With ``tree`` instead of tokens (a PackedTree) it returns fp32 ``(logprobs,
        entropy)``, each [N]: token i's log-prob given its ancestors and the entropy of the
        distribution it was drawn from (see `tree_logprobs`).
        """
        if tree is not None:
            if tokens is not None or targets is not None:
                raise ValueError("pass either tree or tokens (a tree's targets are its tokens)")
            return self.tree_logprobs(self.tree_hidden_states(tree), tree, temperature)
        hidden = self.hidden_states(tokens, positions)
        if targets is None:
            return self.lm_head(hidden)
        return self.token_logprobs(hidden, targets, temperature)

    def token_logprobs(self, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0):
        """hidden: [B, T, H] (from hidden_states); targets: int64[B, T] -> fp32 (logprobs,
        entropy), each [B, T]. Call from inside a module's forward (see `forward`)."""
        B, T = targets.shape
        weight = self.lm_head_weight.to(hidden.dtype)  # under bf16 autocast: a bf16 copy
        logprobs, entropy = fused_logprobs(hidden.reshape(B * T, -1), weight, targets.reshape(B * T), temperature)
        return logprobs.view(B, T), entropy.view(B, T)

    def tree_logprobs(self, hidden: torch.Tensor, tree: PackedTree, temperature: float = 1.0):
        """hidden: [N, H] (from tree_hidden_states) -> fp32 (logprobs, entropy), each [N].

        A token with several children predicts a different next token on each path, so
        the log-prob is indexed by the *predicted* token: logprobs[i] = log softmax(logits
        at parent(i) / temperature)[tokens[i]], entropy[i] that distribution's entropy.
        Roots have no parent and get 0 (they are prompt tokens: no loss). Path p's
        log-probs are logprobs[tree.path_indices[p]][1:], equal to a separate dense pass.
        """
        N = tree.tokens.shape[0]
        children = (tree.parents >= 0).nonzero().squeeze(1)  # [M]: every token but the roots
        weight = self.lm_head_weight.to(hidden.dtype)
        # [M, H]: each token's parent row (a parent with k children appears k times).
        logprobs, entropy = fused_logprobs(hidden[tree.parents[children]], weight, tree.tokens[children], temperature)
        zeros = torch.zeros(N, dtype=torch.float32, device=hidden.device)
        return zeros.scatter(0, children, logprobs), zeros.scatter(0, children, entropy)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())
