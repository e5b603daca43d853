"""Tree packing: one pass over a packed tree gives every path's log-probs and gradients."""

import pytest
import torch

from model import load_model
from model.tree_packing import pack_paths
from tests.tiny_models import FAMILIES, relative_error, write_checkpoint


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = {}
    for i, family in enumerate(sorted(FAMILIES)):
        path = tmp_path_factory.mktemp(family)
        write_checkpoint(path, family, seed=40 + i)
        out[family] = load_model(path)[0]
    return out


def _tokens(g, n):
    return torch.randint(3, 300, (n,), generator=g).tolist()


def _trees():
    """Named path lists covering the shapes a search tree takes."""
    g = torch.Generator().manual_seed(7)
    prompt = _tokens(g, 9)
    step_a, step_b = _tokens(g, 5), _tokens(g, 4)
    branching = [prompt + step_a + _tokens(g, 6), prompt + step_a + _tokens(g, 3) + _tokens(g, 4),
                 prompt + step_b + _tokens(g, 7), prompt + _tokens(g, 8)]
    branching.append(branching[0][:12] + _tokens(g, 5))  # forks inside step_a
    x = _tokens(g, 1)
    return {
        "branching": branching,
        "single_token_shared": [x + _tokens(g, 6), x + _tokens(g, 9), x + _tokens(g, 3)],
        # Share the prompt only: the first response tokens already differ.
        "nothing_shared_after_prompt": [prompt + [5] + _tokens(g, 6), prompt + [6] + _tokens(g, 4)],
        "nothing_shared": [[7] + _tokens(g, 6), [8] + _tokens(g, 5), [9]],  # a forest of three roots
        "prefix_of_another": [prompt + step_a, prompt + step_a + _tokens(g, 6), prompt[:4]],
        "duplicates": [prompt + step_b, prompt + step_a, prompt + step_b, prompt + step_b],
    }


TREES = _trees()


def test_packing_layout_is_the_trie_depth_first():
    A, B, C, D, E, F, G = range(10, 17)
    tree = pack_paths([[A, B, C, D], [A, B, E, F], [A, B, E, G], [A, B, C]])
    assert tree.tokens.tolist() == [A, B, C, D, E, F, G]
    assert tree.positions.tolist() == [0, 1, 2, 3, 2, 3, 3]
    assert tree.parents.tolist() == [-1, 0, 1, 2, 1, 4, 4]
    assert tree.subtree_ends.tolist() == [7, 7, 4, 4, 7, 6, 7]
    assert [p.tolist() for p in tree.path_indices] == [[0, 1, 2, 3], [0, 1, 4, 5], [0, 1, 4, 6], [0, 1, 2]]


@pytest.mark.parametrize("name", sorted(TREES))
def test_packing_restores_paths_and_masks_exactly_the_ancestors(name):
    paths = TREES[name]
    tree = pack_paths(paths)
    assert tree.tokens.shape[0] == len({tuple(p[:i + 1]) for p in paths for i in range(len(p))})  # each prefix once
    mask = tree.attention_mask()
    for p, rows in zip(paths, tree.path_indices):
        assert tree.tokens[rows].tolist() == p
        assert tree.positions[rows].tolist() == list(range(len(p)))
    for i in range(tree.tokens.shape[0]):
        ancestors, j = set(), i
        while j >= 0:
            ancestors.add(j)
            j = int(tree.parents[j])
        assert set(mask[i].nonzero().flatten().tolist()) == ancestors, (name, i)


def test_empty_path_is_refused():
    with pytest.raises(ValueError, match="at least one token"):
        pack_paths([[1, 2], []])


def test_sum_over_paths_adds_the_paths_through_each_token():
    tree = pack_paths([[1, 2, 3], [1, 2, 4], [1, 2, 3]])  # rows: 1 2 3 4
    assert tree.sum_over_paths([1.0, 10.0, 100.0]).tolist() == [111.0, 111.0, 101.0, 10.0]
    per_token = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0]), torch.tensor([7.0, 8.0, 9.0])]
    assert tree.sum_over_paths(per_token).tolist() == [12.0, 15.0, 12.0, 6.0]


def _separate_logprobs(model, path, temperature):
    """The oracle: path alone, dense causal pass; prediction t is token t + 1 given tokens[:t + 1]."""
    tokens = torch.tensor([path])
    logprobs, entropy = model(tokens[:, :-1], targets=tokens[:, 1:], temperature=temperature)
    return logprobs[0], entropy[0]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("name", sorted(TREES))
def test_packed_logprobs_equal_separate_paths(models, family, name):
    model, paths = models[family], TREES[name]
    tree = pack_paths(paths)
    with torch.no_grad():
        logprobs, entropy = model(tree=tree, temperature=0.7)  # [N] each
        assert logprobs[tree.parents < 0].eq(0).all() and entropy[tree.parents < 0].eq(0).all()
        for p, rows in zip(paths, tree.path_indices):
            if len(p) < 2:
                continue  # a lone root predicts nothing
            ref_logprobs, ref_entropy = _separate_logprobs(model, p, 0.7)
            assert relative_error(logprobs[rows[1:]], ref_logprobs) <= 1e-5, (family, name)
            assert relative_error(entropy[rows[1:]], ref_entropy) <= 1e-5, (family, name)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_packed_gradients_equal_the_sum_over_paths(models, family):
    """Σ_p Σ_t a_pt·(logp_pt + 0.1·H_pt) path by path equals the packed loss in which each
    token carries the sum of its paths' weights: every parameter's gradient."""
    model = models[family]
    paths = TREES["branching"] + TREES["duplicates"] + TREES["prefix_of_another"][:2]
    g = torch.Generator().manual_seed(5)
    weights = [torch.randn(len(p) - 1, generator=g) for p in paths]  # one per prediction, any sign

    model.zero_grad(set_to_none=True)
    for p, w in zip(paths, weights):
        logprobs, entropy = _separate_logprobs(model, p, 1.0)
        (w * (logprobs + 0.1 * entropy)).sum().backward()
    separate = _grads(model)

    model.zero_grad(set_to_none=True)
    tree = pack_paths(paths)
    token_weights = tree.sum_over_paths([torch.cat([torch.zeros(1), w]) for w in weights])  # roots predict nothing
    logprobs, entropy = model(tree=tree)
    (token_weights * (logprobs + 0.1 * entropy)).sum().backward()
    packed = _grads(model)
    model.zero_grad(set_to_none=True)

    assert separate.keys() == packed.keys()
    for name, ref in separate.items():
        assert ref.abs().max() > 0, name  # every parameter is exercised
        assert relative_error(packed[name], ref) <= 1e-5, (family, name)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_per_path_layout_is_the_dense_batch_with_its_gradients(models, family):
    """tree.per_path(model(tree=...)) can replace model(inputs, targets=...) of the
    right-padded batch of the same paths: same values where a path has a token, same
    gradients for a loss that masks the padding."""
    model = models[family]
    paths = TREES["branching"] + TREES["duplicates"]
    width = max(len(p) for p in paths) - 1
    inputs = torch.zeros(len(paths), width, dtype=torch.int64)
    targets, valid = torch.zeros_like(inputs), torch.zeros(inputs.shape, dtype=torch.bool)
    for i, p in enumerate(paths):
        n = len(p) - 1
        inputs[i, :n], targets[i, :n], valid[i, :n] = torch.tensor(p[:-1]), torch.tensor(p[1:]), True
    advantages = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(9))

    model.zero_grad(set_to_none=True)
    dense, _ = model(inputs, targets=targets, temperature=0.8)
    (advantages * dense * valid).sum().backward()
    dense_grads = _grads(model)

    model.zero_grad(set_to_none=True)
    tree = pack_paths(paths)
    packed = tree.per_path(model(tree=tree, temperature=0.8)[0], pad=-1.0)
    (advantages * packed * valid).sum().backward()
    packed_grads = _grads(model)
    model.zero_grad(set_to_none=True)

    assert packed.shape == dense.shape and packed[~valid].eq(-1.0).all()
    assert relative_error(packed[valid], dense[valid]) <= 1e-5
    for name, ref in dense_grads.items():
        assert relative_error(packed_grads[name], ref) <= 1e-5, (family, name)
