"""Waves of parallel rollouts on a tiny model: the functional-token search (RL rollouts and
train.eval's MCTS) and the phase-1 prompt-driven search.

With one rollout a wave both must be the search as it was before waves (every node, token,
log-prob and environment call equal to tests/sequential_mcts.py); with several they must be
reproducible, keep the budget, and put problems x parallel rollouts branches in a batch.
"""

import pytest
import torch

from model import load_model
from rftt.data import Problem
from rftt.functional_search import FunctionalTokenEnv
from rftt.prompt_search import PromptDrivenEnv
from rftt.tokens import add_functional_tokens
from search.engine import Engine
from search.mcts import rollout, search, wave_sizes
from search.sampling import SamplingParams
from tests.sequential_mcts import CallLog, fingerprint, sequential_rollout, sequential_search
from tests.tiny_models import write_checkpoint

QUESTIONS = ["What is 2 + 3?", "What is 3 + 4?"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run many small ops: on a busy machine a second intra-op thread only
    waits for a core (measured here: ~20x slower with two threads under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def functional(tmp_path_factory):
    path = tmp_path_factory.mktemp("functional")
    write_checkpoint(path, "qwen3", seed=9)
    model, tok = load_model(path)
    add_functional_tokens(model, tok)
    return model, tok


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain")
    write_checkpoint(path, "qwen3", seed=3)
    return load_model(path)


def _functional_env(functional, golds, seed=1):
    model, tok = functional
    env = FunctionalTokenEnv(Engine(model, num_slots=8192), tok, SamplingParams(temperature=1.0), max_step_tokens=5,
                             golds=golds, seed=seed)
    return env, env.roots([tok.encode(q) for q in QUESTIONS])


def _functional_step(node):
    s = node.state
    return (tuple(s.branch.generated), tuple(s.branch.logprobs), s.stop, None if s.step is None else s.step.content)


def _prompt_env(plain, seed=0):
    model, tok = plain
    env = PromptDrivenEnv(Engine(model, num_slots=8192), tok, SamplingParams(temperature=0.7), max_step_tokens=4,
                          seed=seed)
    return env, env.roots([Problem(q, a) for q, a in zip(QUESTIONS, ["5", "7"])])


def _prompt_step(node):
    s = node.state
    return (s.problem, s.question) if node.parent is None else (s.step.function, s.step.content, s.stop, s.tokens)


def _all_nodes(node):
    return [node] + [n for child in node.children for n in _all_nodes(child)]


# ---- one rollout a wave is the old search -----------------------------------------------

def test_rl_rollout_search_with_one_rollout_a_wave_is_the_old_search(functional):
    old_env, old_roots = _functional_env(functional, golds=["5", "7"])
    new_env, new_roots = _functional_env(functional, golds=["5", "7"])
    old_log, new_log = CallLog(old_env), CallLog(new_env)
    sequential_search(old_roots, old_log, rollouts=5, max_depth=3)
    search(new_roots, new_log, rollouts=5, max_depth=3, parallel_rollouts=1)
    assert new_log.calls == old_log.calls  # same nodes generated, scored, in the same order
    assert [fingerprint(r, _functional_step) for r in new_roots] == [fingerprint(r, _functional_step) for r in old_roots]
    assert [new_env.text(leaf) for r in new_roots for leaf in r.leaves()] == \
        [old_env.text(leaf) for r in old_roots for leaf in r.leaves()]


def test_eval_search_with_one_rollout_a_wave_is_the_old_search(functional):
    """train.eval's loop: no gold answers, one rollout call per budget step."""
    old_env, old_roots = _functional_env(functional, golds=None, seed=4)
    new_env, new_roots = _functional_env(functional, golds=None, seed=4)
    old_log, new_log = CallLog(old_env), CallLog(new_env)
    for _ in range(4):
        sequential_rollout(old_roots, old_log, max_depth=3)
    for size in wave_sizes(4, 1, pause_at=(1, 4)):
        rollout(new_roots, new_log, max_depth=3, parallel_rollouts=size)
    assert new_log.calls == old_log.calls
    assert [fingerprint(r, _functional_step) for r in new_roots] == [fingerprint(r, _functional_step) for r in old_roots]


def test_prompt_driven_search_with_one_rollout_a_wave_is_the_old_search(plain):
    old_env, old_roots = _prompt_env(plain)
    new_env, new_roots = _prompt_env(plain)
    old_log, new_log = CallLog(old_env), CallLog(new_env)
    sequential_search(old_roots, old_log, rollouts=3, max_depth=2)
    search(new_roots, new_log, rollouts=3, max_depth=2)  # the default is one rollout a wave
    assert new_log.calls == old_log.calls
    assert [fingerprint(r, _prompt_step) for r in new_roots] == [fingerprint(r, _prompt_step) for r in old_roots]
    assert new_env.tokens_generated == old_env.tokens_generated


# ---- several rollouts a wave ------------------------------------------------------------

class DecodeSpy:
    """Records how many branches each Engine.decode call was given."""

    def __init__(self, monkeypatch):
        self.sizes = []
        real = Engine.decode

        def decode(engine, branches, *args, **kwargs):
            self.sizes.append(len(branches))
            return real(engine, branches, *args, **kwargs)

        monkeypatch.setattr(Engine, "decode", decode)


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_decode_batch_holds_problems_times_parallel_rollouts(functional, monkeypatch, parallel):
    """One wave on fresh trees: the root has four allowed first steps, so P <= 4 rollouts
    take P different ones and the first level decodes problems x P branches together."""
    spy = DecodeSpy(monkeypatch)
    env, roots = _functional_env(functional, golds=["5", "7"])
    rollout(roots, env, max_depth=2, parallel_rollouts=parallel)
    assert spy.sizes[0] == len(QUESTIONS) * parallel == max(spy.sizes)
    assert [c.visits for r in roots for c in r.children].count(1) == len(QUESTIONS) * parallel


def test_rl_rollout_waves_are_reproducible_and_keep_the_budget(functional):
    runs = []
    for _ in range(2):
        env, roots = _functional_env(functional, golds=["5", "7"], seed=2)
        search(roots, env, rollouts=7, max_depth=3, parallel_rollouts=3)  # waves of 3, 3, 1
        for root in roots:
            assert root.visits == 7 and sum(leaf.visits for leaf in root.leaves()) == 7
            assert all(n.in_flight == 0 for n in _all_nodes(root))
            assert all(leaf.reward in (0.0, 0.1, 1.0) for leaf in root.leaves())
        env.engine.tree.check_invariants()
        runs.append(([fingerprint(r, _functional_step) for r in roots],
                     [env.text(leaf) for r in roots for leaf in r.leaves()]))
    assert runs[0] == runs[1]


def test_prompt_driven_waves_are_reproducible_and_free_their_kv(plain):
    runs = []
    for _ in range(2):
        env, roots = _prompt_env(plain, seed=5)
        search(roots, env, rollouts=3, max_depth=2, parallel_rollouts=3)
        for root in roots:
            assert root.visits == 3 and all(n.in_flight == 0 for n in _all_nodes(root))
            assert len({leaf.path()[1].action for leaf in root.leaves()}) > 1  # spread over first steps
        assert env.engine.pool.num_used == 0
        runs.append([fingerprint(r, _prompt_step) for r in roots])
    assert runs[0] == runs[1]
