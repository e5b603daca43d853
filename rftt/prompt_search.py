"""The prompt-driven tree search of phase 1, the SFT warm-up (paper §3.1).

Before the model has functional tokens, reasoning trees are grown by *prompting* a plain
instruct model for one function at a time (rftt/sft_prompts.py): "restate the question",
"give an analysis", "propose a sub-question and answer it", "do the next step", "answer
directly". This is the phase-1 sibling of rftt/functional_search.py (phase 2), over the
same MCTS (search/mcts.py):

    children   the table rftt.steps.SFT_CHILDREN (a repeated entry is one more child, so a
               state gets two different clarifications, ...); equal priors; the table order
               is the ranking, i.e. which unexplored child a rollout tries first.
    generate   every new step of one tree level, all problems together (and, with
               ``search(..., parallel_rollouts=P)``, P rollouts of each tree; search/mcts.py
               spreads them by virtual loss), in one engine batch:
               each node's prompt (question + "Existing Steps:" + instruction) is prefilled
               as a fresh root, decoded to the function's length cap (EOS stops it; the
               question half of a sub-question stops at a newline, then "Answer:" is forced
               and its answer decoded), read back, and its KV freed at once.
    reward     1.0 when the leaf step's boxed answer equals the gold answer, else 0.0: the
               paper's phase-1 leaf value (§3.1).

Ordering decision. The paper visits "unexplored non-direct-answer children first". With the
few rollouts a CPU affords (4, not the paper's 16) that rule means no rollout ever reaches
an answer before the depth limit: the root alone has 8 non-direct children. The table order
of SFT_CHILDREN already puts a direct answer early below analysis/sub-question/next step,
so by default we keep it; ``direct_answer_last=True`` gives the paper's rule.

Why no KV sharing between steps: each step's prompt ends with a different instruction and
restates the steps as plain text, and siblings are generated in different rollouts, so
there is little common prefix to share; a fresh root per step, pruned right after, keeps
the pool small and its use bounded by one level's batch (problems x P steps at most; a
level that does not fit the pool is split, see `_chunks`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from search.engine import Branch, Engine
from search.mcts import TreeNode
from search.sampling import SamplingParams

from .data import Problem
from .functional_search import STEP_CAPS
from .grading import extract_answer, is_equiv
from .sft_prompts import FORCED_ANSWER_PREFIX, SUBQUESTION_ANSWER_PREFIX, step_prompt
from .steps import ROOT, SFT_CHILDREN, Step, is_terminal

# Anything the step parser would read as a tag (rftt/steps.py, _TAG): removed from model
# text so that format_step never raises and the SFT data parses back cleanly.
_TAG_LIKE = re.compile(r"</?[a-z_]+>")
FORCED_ANSWER_TOKENS = 12  # room for the answer inside a forced \boxed{ (force_answer)


def step_caps(max_step_tokens: int, direct_answer_tokens: int | None = None) -> dict[str, int]:
    """Per-function token caps: the release's (512; sub-question 256 per half; direct answer
    4096) scaled by max_step_tokens / 512, so a direct answer keeps 8x a step's room unless
    `direct_answer_tokens` says otherwise (on a CPU the direct answers dominate the time)."""
    scale = max_step_tokens / 512
    caps = {f: max(1, round(STEP_CAPS[f] * scale)) for f in SFT_CHILDREN[ROOT]}
    if direct_answer_tokens is not None:
        caps["direct_answer"] = max(1, direct_answer_tokens)
    return caps


def clean_content(text: str) -> str:
    """Model text as step content: no tag-like text, no framing whitespace."""
    return _TAG_LIKE.sub("", text).strip()


@dataclass
class RootState:
    problem: int  # index into the problems searched
    question: str
    gold: str | None


@dataclass
class PromptStep:
    step: Step
    stop: str  # "eos" or "length" (how the last generation ended)
    tokens: int  # tokens generated for it


def path_steps(node: TreeNode) -> list[Step]:
    """The steps from the root down to `node` (the root has none)."""
    return [n.state.step for n in node.path()[1:]]


def leaf_answer(node: TreeNode) -> str | None:
    """A path's final answer: the last boxed answer of its last step."""
    return extract_answer(node.state.step.content) if isinstance(node.state, PromptStep) else None


class PromptDrivenEnv:
    """An mcts.Environment for phase 1; one root per problem (make them with `roots`)."""

    def __init__(self, engine: Engine, tokenizer, sampling: SamplingParams = SamplingParams(temperature=0.7),
                 max_step_tokens: int = 512, seed: int = 0, direct_answer_last: bool = False,
                 direct_answer_tokens: int | None = None, force_answer: bool = False):
        self.engine, self.tok, self.sampling = engine, tokenizer, sampling
        self.caps = step_caps(max_step_tokens, direct_answer_tokens)
        self.direct_answer_last = direct_answer_last
        eos = tokenizer.eos_token_id
        self.eos_ids = {eos} if eos is not None else set()
        # Tokens whose text holds a newline end the question half of a sub-question.
        texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        self.newline_ids = {i for i, t in enumerate(texts) if "\n" in t}
        # force_answer: a direct answer that gave no boxed answer gets "So the answer is
        # \boxed{" forced after it and up to FORCED_ANSWER_TOKENS more tokens, to a "}".
        # Not in the paper: a small model (SmolLM2-135M) almost never boxes on its own, and
        # without boxed answers phase 1 finds no correct path at all. Off by default.
        self.force_answer = force_answer
        self.close_brace_ids = {i for i, t in enumerate(texts) if "}" in t}
        self._seed = seed * 1_000_003
        self.steps_generated = 0
        self.tokens_generated = 0

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def roots(self, problems: Sequence[Problem]) -> list[TreeNode]:
        return [TreeNode(None, state=RootState(i, p.question, p.answer)) for i, p in enumerate(problems)]

    # ---- mcts.Environment ------------------------------------------------------------
    def children(self, nodes):
        out = []
        for node in nodes:
            kids = list(SFT_CHILDREN.get(node.action or ROOT, ()))
            if self.direct_answer_last:  # the paper's rule (stable: table order otherwise)
                kids.sort(key=lambda f: f == "direct_answer")
            out.append([(f, 1.0 / len(kids)) for f in kids])
        return out

    def generate(self, nodes):
        nodes = list(nodes)
        prompts = []
        for node in nodes:
            root = node.path()[0].state
            text = step_prompt(self.tok, node.action, root.question, path_steps(node.parent))
            prompts.append(self.tok.encode(text))
        seeds = [self._next_seed() for _ in nodes]  # one stream per step, in node order
        for chunk in self._chunks(prompts, [self._slots_needed(n.action) for n in nodes]):
            self._generate_chunk([nodes[i] for i in chunk], [prompts[i] for i in chunk], [seeds[i] for i in chunk])

    def reward(self, leaves):
        rewards = []
        for leaf in leaves:
            gold = leaf.path()[0].state.gold
            answer = leaf_answer(leaf)
            rewards.append(1.0 if answer is not None and gold is not None and is_equiv(answer, gold) else 0.0)
        return rewards

    # ---- generation ---------------------------------------------------------------------
    def _slots_needed(self, function: str) -> int:
        extra = self.caps[function] + len(self.tok.encode(SUBQUESTION_ANSWER_PREFIX)) if function == "subquestion" else 0
        if function == "direct_answer" and self.force_answer:
            extra = len(self.tok.encode(FORCED_ANSWER_PREFIX)) + FORCED_ANSWER_TOKENS
        return self.caps[function] + extra

    def _chunks(self, prompts: list[list[int]], gen_slots: list[int]) -> list[list[int]]:
        """Splits a batch so each part fits the pool (its KV is freed before the next)."""
        budget = self.engine.pool.num_free
        chunks, current, used = [], [], 0
        for i, (p, g) in enumerate(zip(prompts, gen_slots)):
            need = len(p) + g
            if need > budget:
                raise ValueError(f"one step needs {need} KV slots but the pool has {budget} free: "
                                 f"give the Engine more num_slots")
            if used + need > budget:
                chunks.append(current)
                current, used = [], 0
            current.append(i)
            used += need
        if current:
            chunks.append(current)
        return chunks

    def _decode_grouped(self, branches: list[Branch], caps: list[int], stops: list[frozenset]) -> list[int]:
        """Decodes each branch to its cap and stop set; returns where each one's new text starts."""
        starts = [len(b.generated) for b in branches]
        for b in branches:
            b.stop_reason = None
        for key in sorted(set(zip(caps, stops)), key=lambda k: (k[0], sorted(k[1]))):
            group = [b for b, c, s in zip(branches, caps, stops) if (c, s) == key]
            self.engine.decode(group, self.sampling, key[0], set(key[1]))
        return starts

    def _new_text(self, branch: Branch, start: int) -> tuple[str, str]:
        ids = branch.generated[start:]
        stop = "eos" if ids and ids[-1] in self.eos_ids else "length"
        if stop == "eos":
            ids = ids[:-1]
        return self.tok.decode(ids, skip_special_tokens=True), stop

    def _generate_chunk(self, nodes: list[TreeNode], prompts: list[list[int]], seeds: list[int]) -> None:
        branches = self.engine.prefill(prompts, seeds)
        try:
            eos = frozenset(self.eos_ids)
            sub_stop = frozenset(self.eos_ids | self.newline_ids)
            starts = self._decode_grouped(
                branches, [self.caps[n.action] for n in nodes],
                [sub_stop if n.action == "subquestion" else eos for n in nodes])
            texts = [self._new_text(b, s) for b, s in zip(branches, starts)]
            # A sub-question's second half: force "Answer:", then decode the answer.
            second = [i for i, n in enumerate(nodes) if n.action == "subquestion" and texts[i][1] != "eos"]
            answers: dict[int, tuple[str, str]] = {}
            if second:
                forced = []
                for i in second:
                    b = branches[i]
                    ended_line = b.generated and "\n" in self.tok.decode([b.generated[-1]])
                    forced.append(self.tok.encode(SUBQUESTION_ANSWER_PREFIX.lstrip("\n") if ended_line
                                                  else SUBQUESTION_ANSWER_PREFIX))
                self.engine.extend([branches[i] for i in second], forced)
                sub_branches = [branches[i] for i in second]
                sub_starts = self._decode_grouped(sub_branches, [self.caps["subquestion"]] * len(second), [eos] * len(second))
                for i, b, s in zip(second, sub_branches, sub_starts):
                    answers[i] = self._new_text(b, s)
            if self.force_answer:
                self._force_answers(nodes, branches, texts)
            for i, (node, branch) in enumerate(zip(nodes, branches)):
                text, stop = texts[i]
                if node.action == "subquestion":
                    question = clean_content(text.split("\n")[0])
                    answer, stop = answers.get(i, ("", stop))
                    content = "\n".join(part for part in (question, clean_content(answer)) if part)
                else:
                    content = clean_content(text)
                step = Step(node.action, content)
                node.state = PromptStep(step, stop, len(branch.generated))
                node.terminal = is_terminal(step)
                self.steps_generated += 1
                self.tokens_generated += len(branch.generated)
        finally:
            for b in branches:  # each step's prompt is private: free its KV now
                self.engine.tree.prune(b.node)

    def _force_answers(self, nodes, branches, texts) -> None:
        """Appends a forced "So the answer is \\boxed{...}" to unanswered direct answers."""
        todo = [i for i, n in enumerate(nodes) if n.action == "direct_answer" and extract_answer(texts[i][0]) is None]
        if not todo:
            return
        self.engine.extend([branches[i] for i in todo], [self.tok.encode(FORCED_ANSWER_PREFIX)] * len(todo))
        sub = [branches[i] for i in todo]
        starts = self._decode_grouped(sub, [FORCED_ANSWER_TOKENS] * len(todo),
                                      [frozenset(self.close_brace_ids | self.eos_ids)] * len(todo))
        for i, b, s in zip(todo, sub, starts):
            answer, _ = self._new_text(b, s)
            answer = answer.split("}")[0].strip()
            if answer and "{" not in answer and "\n" not in answer:
                text, stop = texts[i]
                texts[i] = (f"{text.rstrip()}{FORCED_ANSWER_PREFIX}{answer}}}.", stop)

    def complete(self, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
        """Free-form completions (e.g. cross-verification), batched and freed like steps."""
        seeds = [self._next_seed() for _ in prompts]
        out: list[str] = [""] * len(prompts)
        for chunk in self._chunks(prompts, [max_new_tokens] * len(prompts)):
            branches = self.engine.prefill([prompts[i] for i in chunk], [seeds[i] for i in chunk])
            try:
                self.engine.decode(branches, self.sampling, max_new_tokens, set(self.eos_ids))
                for i, b in zip(chunk, branches):
                    out[i] = self._new_text(b, 0)[0]
                    self.tokens_generated += len(b.generated)
            finally:
                for b in branches:
                    self.engine.tree.prune(b.node)
        return out
