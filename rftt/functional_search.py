"""Functional-token tree search: the RL rollouts and inference-time search (paper §3.3).

No prompts steer this search: the model writes its own reasoning steps, and the tree
branches on *which function comes next*. After a step ``<tag>\\n...\\n</tag>\\n`` the
model's next-token distribution over the opening functional tokens, restricted to the
allowed transitions (rftt/steps.py, RL_TRANSITIONS), ranks the children, and the search
visits the most probable unexplored child first, then UCT (search/mcts.py).

Every allowed function is a child by default, even one the model gives 1e-8: the tag is
forced, and the model writes a step under it. The authors' release keeps only the likely
tags (`min_function_prob` here; every allowed one when none is likely). Measured on the
SFT model's first RL iteration (bench/RESULTS.md, "RL from the SFT model"): with a 5 %
floor each tree held only the clarify/analysis paths, 13 distinct leaves from 64 rollouts
(2 correct); with none, 57 leaves (8 correct), 4 of the 8 under a root tag the model
gives < 1e-8. The narrow tree is 4x faster, but 16 rollouts then revisit the same few
paths, and RL gets a quarter of the samples. Over whole runs the speed won: train.ppo's
default preset takes the 5 % floor and spends the time on 3x the problems an iteration,
the one RL setting measured above the SFT model on held-out problems (bench/RESULTS.md,
"Twelve problems an iteration").

Generating a child step is: fork the parent's branch (its KV is shared, not copied),
force the opening tag and a newline, decode until a functional token, EOS, or the step's
length cap, then force the newline after the closing tag (or the closing tag itself, if
the cap cut the step off). A step that ends on any tag but its own closing tag is
malformed and ends its path (its reward then says how good that was). All the new steps of one
tree level are generated in one engine batch: every problem's, and with
``search(..., parallel_rollouts=P)`` those of P rollouts of each tree (search/mcts.py,
virtual loss), so a batch holds up to problems x P branches. Siblings forked from one
parent in the same batch share its KV like any other fork.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from search.engine import Branch, Engine
from search.mcts import TreeNode
from search.sampling import SamplingParams

from .grading import extract_answer
from .rewards import RewardFn, outcome_reward
from .steps import RL_TRANSITIONS, ROOT, Step, is_terminal
from .tokens import CLOSE_TAGS, FUNCTIONS, close_tag, open_tag

# Step length caps in tokens (the authors' release: 512 for most steps, 4096 for a
# direct answer); every cap is clipped to `max_step_tokens` for small machines, and a
# direct answer to its own `direct_answer_tokens` when given: it writes the rest of the
# solution in one step, so a step's cap cuts it mid-calculation, before its \boxed{}.
STEP_CAPS = {f: 512 for f in FUNCTIONS} | {"subquestion": 256, "direct_answer": 4096, "output": 256}

# A function becomes a child when the model gives it at least this probability (0: every
# allowed function; the module docstring says why that is the default).
MIN_FUNCTION_PROB = 0.0


@dataclass
class StepState:
    branch: Branch  # the engine branch whose text ends with this step
    step: Step | None  # None at the root
    stop: str  # "close" (its closing tag), "malformed" (any other tag), "eos", "length", or "root"


class FunctionalTokenEnv:
    """An mcts.Environment over one engine; one root per problem (make with `roots`)."""

    def __init__(self, engine: Engine, tokenizer, sampling: SamplingParams, max_step_tokens: int = 512,
                 golds: list[str | None] | None = None, seed: int = 0, reward_fn: RewardFn = outcome_reward,
                 direct_answer_tokens: int | None = None, min_function_prob: float = MIN_FUNCTION_PROB):
        if not 0.0 <= min_function_prob <= 1.0:
            raise ValueError(f"min_function_prob must be in [0, 1], got {min_function_prob}")
        missing = [t for t in (open_tag(f) for f in FUNCTIONS) if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"the tokenizer lacks functional tokens {missing}: call rftt.tokens.add_functional_tokens first")
        self.engine, self.tok, self.sampling = engine, tokenizer, sampling
        self.caps = {f: min(cap, max_step_tokens) for f, cap in STEP_CAPS.items()}
        if direct_answer_tokens is not None:
            self.caps["direct_answer"] = min(STEP_CAPS["direct_answer"], direct_answer_tokens)
        self.golds = golds
        self.min_function_prob = min_function_prob
        self.reward_fn = reward_fn  # (response text, gold) -> float; the paper's outcome reward by default
        self.open_ids = {f: tokenizer.token_to_id(open_tag(f)) for f in FUNCTIONS}
        self.close_ids = {tokenizer.token_to_id(t) for t in CLOSE_TAGS}
        # Any functional token ends a step's decoding: only its own closing tag ends it
        # cleanly; an opening tag or another function's closing tag means malformed text.
        self.tag_ids = self.close_ids | set(self.open_ids.values())
        self.stop_ids = self.tag_ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
        self.newline = tokenizer.encode("\n")
        self._seed = seed * 1_000_003
        self._problem_of: dict[int, int] = {}  # id(root) -> problem index
        self._prompt_len: dict[int, int] = {}  # id(root) -> prompt tokens

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def roots(self, prompts: list[list[int]]) -> list[TreeNode]:
        """One tree per problem; `prompts` are chat-templated token ids ending where the
        assistant's answer starts."""
        branches = self.engine.prefill(prompts, [self._next_seed() for _ in prompts])
        roots = []
        for i, b in enumerate(branches):
            root = TreeNode(None, state=StepState(b, None, "root"))
            self._problem_of[id(root)] = i
            self._prompt_len[id(root)] = len(prompts[i])
            roots.append(root)
        return roots

    # ---- mcts.Environment ------------------------------------------------------------
    def children(self, nodes):
        out = []
        for node in nodes:
            allowed = RL_TRANSITIONS[node.action or ROOT]
            probs = torch.softmax(node.state.branch.next_logits.float(), -1)
            scored = sorted(((f, float(probs[self.open_ids[f]])) for f in allowed),
                            key=lambda fp: -fp[1])  # stable: table order breaks ties
            likely = [(f, p) for f, p in scored if p >= self.min_function_prob]
            out.append(likely or scored)
        return out

    def generate(self, nodes):
        branches = [self.engine.fork(n.parent.state.branch, self._next_seed()) for n in nodes]
        self.engine.extend(branches, [[self.open_ids[n.action]] + self.newline for n in nodes])
        starts = [len(b.generated) for b in branches]
        # Decode in groups of equal cap so one long direct answer does not hold the batch.
        caps = [self.caps[n.action] for n in nodes]
        for cap in sorted(set(caps)):
            group = [b for b, c in zip(branches, caps) if c == cap]
            self.engine.decode(group, self.sampling, cap, self.stop_ids)
        tails = []
        for node, branch, start in zip(nodes, branches, starts):
            new = branch.generated[start:]
            last = new[-1] if new else None
            if last == self.close_ids_for(node.action):
                stop, tail = "close", self.newline
            elif last in self.tag_ids:  # another function's tag inside the step: malformed
                stop, tail = "malformed", self.newline
            elif last == self.tok.eos_token_id:
                stop, tail = "eos", []
            else:  # cut off by the cap: close the step so the text stays well formed
                stop, tail = "length", [self.close_ids_for(node.action)] + self.newline
            content_ids = new[:-1] if stop in ("close", "malformed", "eos") else new
            step = Step(node.action, self.tok.decode(content_ids).strip("\n"))
            node.state = StepState(branch, step, stop)
            # A malformed step ends its path: nothing sensible can be built on it.
            node.terminal = stop in ("eos", "malformed") or node.action in ("direct_answer", "output") or is_terminal(step)
            tails.append(tail)
        self.engine.extend(branches, tails)  # the newline after each closing tag, in one pass

    def close_ids_for(self, function: str) -> int:
        return self.tok.token_to_id(close_tag(function))

    def reward(self, leaves):
        rewards = []
        for leaf in leaves:
            text = self.text(leaf)
            gold = self.golds[self._problem_of[id(leaf.path()[0])]] if self.golds else None
            if gold is not None:
                rewards.append(self.reward_fn(text, gold))
            else:  # inference without a gold answer: value a path by whether it answers
                rewards.append(1.0 if extract_answer(text) is not None else 0.0)
        return rewards

    # ---- reading results ---------------------------------------------------------------
    def text(self, node: TreeNode) -> str:
        """The response so far: every step on the path, as the model wrote it."""
        ids = self.engine.text_tokens(node.state.branch)
        return self.tok.decode(ids[self._prompt_len[id(node.path()[0])]:])
