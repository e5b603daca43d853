"""RL rollouts: functional-token MCTS on a batch of problems, each leaf path one sample.

The search (rftt/functional_search.py over search/mcts.py) branches on which functional
token comes next, ranked by the policy's own probabilities; every step's text is sampled
from the policy. All problems are searched in lockstep in one engine, so each tree level
of every problem is one batch. A sample is a distinct root-to-leaf path: the prompt, the
response tokens (the forced tags and the sampled text), and the leaf's reward.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tqdm import tqdm

from rftt.data import Problem
from rftt.functional_search import MIN_FUNCTION_PROB, FunctionalTokenEnv
from rftt.grading import extract_answer
from rftt.prompts import solve_prompt_ids
from rftt.rewards import RewardFn, outcome_reward
from rftt.steps import parse_steps
from search.engine import Engine
from search.mcts import ROLLOUT_BAR_FORMAT, search
from search.sampling import SamplingParams
from train.accuracy import stop_ids
from train.sequences import Sequence


@dataclass
class Sample:
    problem: int  # index into the iteration's problems (the GRPO group)
    sequence: Sequence  # prompt + response token ids
    reward: float
    functions: list[str]  # the functional tokens along the path
    response: str
    answer: str | None


def collect_rollouts(engine: Engine, tokenizer, problems: list[Problem], *, rollouts: int, max_depth: int,
                     max_step_tokens: int, temperature: float, seed: int, progress: bool = True,
                     desc: str = "rollouts", reward_fn: RewardFn = outcome_reward,
                     parallel_rollouts: int = 1, direct_answer_tokens: int | None = None,
                     min_function_prob: float = MIN_FUNCTION_PROB) -> tuple[list[Sample], list]:
    """Searches every problem with `rollouts` MCTS rollouts, `parallel_rollouts` of each tree
    per wave (search/mcts.py: virtual loss); returns (samples, roots). Steps are capped at
    `max_step_tokens`, a direct answer at `direct_answer_tokens` (default: the same); a
    function is a child when the policy gives it `min_function_prob` (rftt/functional_search.py)."""
    env = FunctionalTokenEnv(engine, tokenizer, SamplingParams(temperature=temperature), max_step_tokens,
                             golds=[p.answer for p in problems], seed=seed, reward_fn=reward_fn,
                             direct_answer_tokens=direct_answer_tokens, min_function_prob=min_function_prob)
    prompts = [solve_prompt_ids(tokenizer, p.question) for p in problems]
    roots = env.roots(prompts)
    with tqdm(total=rollouts, desc=desc, bar_format=ROLLOUT_BAR_FORMAT, leave=False, disable=not progress) as bar:
        search(roots, env, rollouts=rollouts, max_depth=max_depth, progress=bar, parallel_rollouts=parallel_rollouts)
    samples = []
    for i, root in enumerate(roots):
        for leaf in root.leaves():  # distinct paths; a path reached twice is one sample
            tokens = engine.text_tokens(leaf.state.branch)
            response = env.text(leaf)
            samples.append(Sample(i, Sequence(tokens, len(prompts[i])), float(leaf.reward),
                                  [n.action for n in leaf.path()[1:]], response, extract_answer(response)))
    return samples, roots


def sample_rollouts(engine: Engine, tokenizer, problems: list[Problem], *, samples_per_problem: int,
                    max_new_tokens: int, temperature: float, seed: int,
                    reward_fn: RewardFn = outcome_reward) -> list[Sample]:
    """The paper's "w/o MCTS" ablation (§4.3): no tree, `samples_per_problem` whole answers
    sampled from each solver prompt at `temperature`, each until EOS, `</output>` or
    `max_new_tokens` (give it the search's path budget). The model still writes its own
    functional tokens; nothing makes it branch on them. All answers of all problems
    decode in one engine batch, sharing their prompt's KV."""
    prompts = [solve_prompt_ids(tokenizer, p.question) for p in problems]
    seeds = iter(range(seed * 1_000_003, seed * 1_000_003 + len(prompts) * (samples_per_problem + 1)))
    roots = engine.prefill(prompts, [next(seeds) for _ in prompts])
    branches = [(i, engine.fork(root, next(seeds))) for i, root in enumerate(roots) for _ in range(samples_per_problem)]
    engine.decode([b for _, b in branches], SamplingParams(temperature=temperature), max_new_tokens,
                  stop_ids(tokenizer))
    samples = []
    for i, branch in branches:
        response = tokenizer.decode(branch.generated)
        parsed = parse_steps(response)
        samples.append(Sample(i, Sequence(engine.text_tokens(branch), len(prompts[i])),
                              float(reward_fn(response, problems[i].answer)), [st.function for st in parsed.steps],
                              response, extract_answer(response)))
    return samples


def function_counts(samples: list[Sample]) -> dict[str, int]:
    """How often each functional token was chosen along the sampled paths."""
    return dict(Counter(f for s in samples for f in s.functions))
