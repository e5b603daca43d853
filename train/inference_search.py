"""Inference-time functional-token search and its majority vote (paper §3.4): what
`python -m train.eval` and `python -m train.solve` share, so one question is answered
the same way by both.

The search is the RL rollout search (rftt/functional_search.py) without a gold answer:
a leaf is worth 1 when it gives an answer, 0 when not. After any number of rollouts the
answers of the leaves found so far vote; the majority is the search's answer.
"""

from __future__ import annotations

from collections import Counter

from model.context import search_path_tokens
from rftt.functional_search import MIN_FUNCTION_PROB, FunctionalTokenEnv
from rftt.grading import extract_answer, normalize_answer
from rftt.prompts import solve_prompt_ids
from search.engine import Engine
from search.mcts import TreeNode
from search.sampling import SamplingParams


def start_search(model, tok, questions: list[str], *, rollouts: int, depth: int, max_step_tokens: int,
                 temperature: float, seed: int, direct_answer_tokens: int | None = None,
                 min_function_prob: float = MIN_FUNCTION_PROB) -> tuple[FunctionalTokenEnv, list[TreeNode]]:
    """(env, roots): one tree per question, posed with the solver prompt, on an engine
    that holds `rollouts` rollouts of each. Run them with search.mcts.rollout/search. A
    function is a child when the policy gives it `min_function_prob` (rftt/functional_search.py)."""
    prompts = [solve_prompt_ids(tok, q) for q in questions]
    engine = Engine.for_search(model, sum(len(p) for p in prompts), len(prompts) * rollouts,
                               search_path_tokens(depth, max_step_tokens, direct_answer_tokens))
    env = FunctionalTokenEnv(engine, tok, SamplingParams(temperature=temperature), max_step_tokens,
                             golds=None, seed=seed, direct_answer_tokens=direct_answer_tokens,
                             min_function_prob=min_function_prob)
    return env, env.roots(prompts)


def majority_answer(answers: list[str | None]) -> str | None:
    """The most common answer (by normalised form); ties go to the one seen first."""
    seen = [a for a in answers if a is not None]
    if not seen:
        return None
    counts = Counter(normalize_answer(a) for a in seen)
    best = max(counts.values())
    return next(a for a in seen if counts[normalize_answer(a)] == best)


def leaf_answers(env: FunctionalTokenEnv, root: TreeNode) -> list[tuple[TreeNode, str | None]]:
    """Every leaf found so far in `root`'s tree with the answer its path gives."""
    return [(leaf, extract_answer(env.text(leaf))) for leaf in root.leaves()]


def leaf_record(env: FunctionalTokenEnv, leaf: TreeNode, answer: str | None) -> dict:
    """What one leaf of a search was, for reading an evaluation afterwards: the functions
    on its path, how its last step stopped ("close": its closing tag, "length": the step's
    cap, "eos", "malformed"), whether that step ended the path (a direct answer, an
    <output>, EOS; otherwise the path ran into the depth limit), the rollouts that ended
    there, its answer and its text."""
    return {"functions": [node.action for node in leaf.path()[1:]], "last_step": leaf.state.stop,
            "terminal": leaf.terminal, "visits": leaf.visits, "answer": answer, "text": env.text(leaf)}
