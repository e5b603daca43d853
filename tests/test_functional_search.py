"""Functional-token MCTS over the engine."""

import pytest
import torch

from model import load_model
from rftt.functional_search import FunctionalTokenEnv
from rftt.steps import RL_TRANSITIONS, ROOT, parse_steps
from rftt.tokens import add_functional_tokens, open_tag
from search.engine import Engine
from search.mcts import TreeNode, search
from search.sampling import SamplingParams
from tests.tiny_models import write_checkpoint


@pytest.fixture
def tiny(tmp_path):
    write_checkpoint(tmp_path / "ckpt", "qwen3", seed=9)
    model, tok = load_model(tmp_path / "ckpt")
    add_functional_tokens(model, tok)
    return model, tok, tmp_path / "ckpt"


def _env(model, tok, golds=None, max_step_tokens=6, **kwargs):
    engine = Engine(model, num_slots=4096)
    return FunctionalTokenEnv(engine, tok, SamplingParams(temperature=1.0), max_step_tokens, golds=golds, seed=1,
                              **kwargs)


def test_children_are_allowed_tags_ranked_by_model_probability(tiny):
    model, tok, _ = tiny
    env = _env(model, tok)  # the default floor, 0: every allowed function
    prompt = tok.encode("What is 2 + 3?")
    (root,) = env.roots([prompt])
    (kids,) = env.children([root])
    assert [f for f, _ in kids] != [] and {f for f, _ in kids} == set(RL_TRANSITIONS[ROOT])
    with torch.no_grad():
        probs = model(torch.tensor([prompt]))[0, -1].softmax(-1)
    expected = sorted(RL_TRANSITIONS[ROOT], key=lambda f: -probs[tok.token_to_id(open_tag(f))].item())
    assert [f for f, _ in kids] == expected
    for f, p in kids:
        assert p == pytest.approx(probs[tok.token_to_id(open_tag(f))].item(), rel=1e-4)


def _root_with_tag_probs(env, tok, probs: dict[str, float]):
    """A root whose next-token distribution gives each named tag the given probability
    and spreads the rest over the ordinary tokens."""
    (root,) = env.roots([tok.encode("What is 2 + 3?")])
    logits = root.state.branch.next_logits
    tag_ids = [tok.token_to_id(open_tag(f)) for f in probs]
    rest = 1.0 - sum(probs.values())
    dist = torch.full_like(logits, rest / (logits.numel() - len(tag_ids)))
    for f, p in probs.items():
        dist[tok.token_to_id(open_tag(f))] = p
    root.state.branch.next_logits = dist.log()
    return root


def test_children_are_the_functions_the_model_would_write(tiny):
    """Functions under the floor are not searched: a tree's rollouts go to what the policy
    writes, not to a tag it gives 1e-8 (the authors' release keeps only the likely tags)."""
    model, tok, _ = tiny
    probs = {"clarify": 0.55, "analysis": 0.4, "subquestion": 1e-8, "next_step": 0.049}
    env = _env(model, tok, min_function_prob=0.05)
    (kids,) = env.children([_root_with_tag_probs(env, tok, probs)])
    assert [f for f, _ in kids] == ["clarify", "analysis"]
    assert [p for _, p in kids] == pytest.approx([0.55, 0.4], rel=1e-4)
    env = _env(model, tok, min_function_prob=0.0)  # no floor: every allowed function
    (kids,) = env.children([_root_with_tag_probs(env, tok, probs)])
    assert [f for f, _ in kids] == ["clarify", "analysis", "next_step", "subquestion"]


def test_a_model_that_writes_no_tag_gets_every_allowed_function(tiny):
    """Below the floor everywhere (a base model that never saw the tags): every allowed
    function, most probable first, so the search still has somewhere to go."""
    model, tok, _ = tiny
    probs = {"clarify": 1e-4, "analysis": 3e-4, "subquestion": 2e-4, "next_step": 1e-5}
    env = _env(model, tok, min_function_prob=0.05)
    (kids,) = env.children([_root_with_tag_probs(env, tok, probs)])
    assert [f for f, _ in kids] == ["analysis", "subquestion", "clarify", "next_step"]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_env_refuses_a_floor_outside_0_1(tiny, bad):
    model, tok, _ = tiny
    with pytest.raises(ValueError, match="min_function_prob"):
        _env(model, tok, min_function_prob=bad)


def test_search_builds_well_formed_paths_with_rewards(tiny):
    model, tok, _ = tiny
    env = _env(model, tok, golds=["5", "7"])
    roots = env.roots([tok.encode("What is 2 + 3?"), tok.encode("What is 3 + 4?")])
    search(roots, env, rollouts=5, max_depth=3)
    for root in roots:
        assert root.visits == 5
        leaves = root.leaves()
        assert leaves and all(leaf.reward in (0.0, 0.1, 1.0) for leaf in leaves)
        for leaf in leaves:
            actions = [n.action for n in leaf.path()[1:]]
            for prev, nxt in zip([ROOT] + actions, actions):
                assert nxt in RL_TRANSITIONS[prev]
            parsed = parse_steps(env.text(leaf))
            if leaf.state.stop in ("malformed", "eos"):  # the model broke off the last step: path ended
                assert leaf.terminal
                actions = actions[:-1]
            # every step the search closed parses back as written, in order (a random model
            # may leave a step empty: that is reported, not fatal)
            nonempty = [a for a, n in zip(actions, leaf.path()[1:]) if n.state.step.content.strip()]
            assert [s.function for s in parsed.steps][: len(nonempty)] == nonempty
            if leaf.state.stop not in ("malformed", "eos"):
                assert {p.kind for p in parsed.problems} <= {"empty_content"}
    env.engine.tree.check_invariants()


def test_env_refuses_a_tokenizer_without_functional_tokens(tmp_path):
    write_checkpoint(tmp_path / "plain", "qwen3", seed=1)
    model, tok = load_model(tmp_path / "plain")
    with pytest.raises(ValueError, match="add_functional_tokens"):
        FunctionalTokenEnv(Engine(model, num_slots=64), tok, SamplingParams())


def test_a_direct_answer_has_its_own_length_cap(tiny):
    """A direct answer writes the rest of the solution in one step: `direct_answer_tokens`
    caps it, every other step stays at `max_step_tokens`."""
    model, tok, _ = tiny
    engine = Engine(model, num_slots=4096)
    env = FunctionalTokenEnv(engine, tok, SamplingParams(temperature=1.0), max_step_tokens=3, seed=2,
                             direct_answer_tokens=11)
    (root,) = env.roots([tok.encode("What is 2 + 3?")])
    kids = [TreeNode(f, parent=root, depth=1) for f in ("clarify", "direct_answer", "analysis")]
    env.generate(kids)
    caps = {"clarify": 3, "direct_answer": 11, "analysis": 3}
    for kid in kids:
        assert kid.state.stop == "length", kid.state.stop  # this random model never closes its step
        assert len(kid.state.branch.generated) == caps[kid.action], kid.action  # sampled tokens only
    assert kids[1].terminal and not kids[0].terminal
