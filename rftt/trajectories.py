"""From a searched phase-1 tree to tagged SFT trajectories (paper §3.1; the ranking and
merge rules of the authors' release).

Two kinds of training response come out of one tree:

    correct    the best correct path, then  <output> The answer is \\boxed{ANS}. </output>
    verified   cross-verification: the correct path and a wrong path that leaves it at most
               3 steps above the correct leaf are merged as
                   shared prefix -> wrong suffix -> <verify> (where it went wrong)
                   -> correct suffix, its first step as <refine> -> <output>

The correct leaf is the best by, in order: fewest repeated steps (a step whose content
already appeared earlier on the path: the model looping), longest path, shortest final
step, highest mean step value (MCTS Q of the nodes on the path).

Every response is checked before it is kept (``validate_steps``): it must parse back into
exactly its steps, follow rftt.steps.RL_TRANSITIONS from the root to <output> (what the
RL phase and inference will allow; SFT_DATA_TRANSITIONS adds root -> direct_answer), and
end with the right boxed answer. Anything else is
dropped and counted, never emitted.

Everything here works on plain data (TreeNodes whose state holds a Step, lists of Steps),
so it is tested on hand-built trees, without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from search.mcts import TreeNode

from .grading import extract_answer, is_equiv
from .steps import RL_TRANSITIONS, ROOT, Step, format_steps, parse_steps

MAX_DIVERGENCE = 3  # the wrong path shares an ancestor at distance < 4 from the correct leaf


def step_of(node: TreeNode) -> Step:
    """The Step a search node holds (a Step itself, or a state with a .step)."""
    return node.state if isinstance(node.state, Step) else node.state.step


def steps_of(node: TreeNode) -> list[Step]:
    return [step_of(n) for n in node.path()[1:]]


def output_step(answer: str) -> Step:
    return Step("output", f"The answer is \\boxed{{{answer}}}.")


# SFT data follows the RL table (so RL continues what SFT taught), except that a path may
# open with a direct answer: the phase-1 search offers it at the root (SFT_CHILDREN), and
# for a small model that is where most correct leaves are. RL's root never offers it.
SFT_DATA_TRANSITIONS = {**RL_TRANSITIONS, ROOT: RL_TRANSITIONS[ROOT] + ("direct_answer",)}


def transitions_ok(functions: Sequence[str], start: str = ROOT) -> bool:
    prev = start
    for f in functions:
        if f not in SFT_DATA_TRANSITIONS.get(prev, ()):
            return False
        prev = f
    return True


def repeated_steps(steps: Sequence[Step]) -> int:
    """Steps whose content (whitespace-normalised) already appeared earlier on the path."""
    seen, repeats = set(), 0
    for s in steps:
        key = " ".join(s.content.split())
        repeats += key in seen
        seen.add(key)
    return repeats


def _mean_value(leaf: TreeNode) -> float:
    nodes = leaf.path()[1:]
    return sum(n.value for n in nodes) / len(nodes) if nodes else 0.0


def _leaf_answer(leaf: TreeNode) -> str | None:
    return extract_answer(step_of(leaf).content)


def correct_leaves(root: TreeNode) -> list[TreeNode]:
    """Leaves with reward 1, a boxed answer in the last step and no empty step."""
    return [leaf for leaf in root.leaves()
            if leaf.reward is not None and leaf.reward >= 1.0 and leaf is not root
            and _leaf_answer(leaf) is not None and _no_empty_step(leaf)]


def _no_empty_step(leaf: TreeNode) -> bool:
    return all(s.content.strip() for s in steps_of(leaf))


def rank_key(leaf: TreeNode) -> tuple:
    steps = steps_of(leaf)
    return (repeated_steps(steps), -len(steps), len(steps[-1].content), -_mean_value(leaf))


def choose_correct_leaf(root: TreeNode, plain: bool = True) -> TreeNode | None:
    """The best correct leaf: fewest repeated steps, then the longest path, the shortest
final step, the best mean step score (the authors' order). plain=True: only leaves whose own path
    is a valid RL trajectory, so it can be emitted as a "correct" row. (A direct answer
    straight from the root is searched in phase 1 but is not an RL transition; such a
    path can still be the corrected half of a merge, where it becomes a <refine>.)"""
    leaves = correct_leaves(root)
    if plain:
        leaves = [leaf for leaf in leaves if transitions_ok([n.action for n in leaf.path()[1:]] + ["output"])]
    return min(leaves, key=rank_key) if leaves else None  # min is stable: tree order breaks ties


def common_ancestor(a: TreeNode, b: TreeNode) -> TreeNode:
    pa, pb = a.path(), b.path()
    shared = None
    for x, y in zip(pa, pb):
        if x is not y:
            break
        shared = x
    if shared is None:
        raise ValueError("the two nodes are in different trees")
    return shared


def choose_wrong_leaf(correct: TreeNode, root: TreeNode) -> TreeNode | None:
    """A wrong leaf to merge with `correct`: reward 0, diverging from the correct path at an
    ancestor less than 4 steps above the correct leaf, its path valid in RL and able to be
    followed by <verify>. Preferred: one that gave an answer (a wrong answer to correct),
    then the latest divergence, then tree order."""
    candidates = []
    for order, leaf in enumerate(root.leaves()):
        if leaf.reward is None or leaf.reward > 0 or leaf is correct:
            continue
        lca = common_ancestor(leaf, correct)
        if lca is leaf or lca is correct or correct.depth - lca.depth > MAX_DIVERGENCE:
            continue
        functions = [n.action for n in leaf.path()[1:]]
        if not transitions_ok(functions + ["verify"]) or not _no_empty_step(leaf):
            continue
        candidates.append(((_leaf_answer(leaf) is None, correct.depth - lca.depth, order), leaf))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


@dataclass
class MergePlan:
    """The pieces of a cross-verification merge, before the verify text exists."""
    shared: list[Step]
    wrong: list[Step]
    correct: list[Step]
    answer: str  # the correct leaf's extracted answer
    correct_path: list[str]  # functions, root excluded
    wrong_path: list[str]
    leaf_reward: float


def plan_merge(correct_leaf: TreeNode, wrong_leaf: TreeNode) -> MergePlan:
    lca = common_ancestor(correct_leaf, wrong_leaf)
    correct_steps, wrong_steps = steps_of(correct_leaf), steps_of(wrong_leaf)
    k = lca.depth  # the root is depth 0: steps above the divergence are the first k
    return MergePlan(correct_steps[:k], wrong_steps[k:], correct_steps[k:], _leaf_answer(correct_leaf),
                     [s.function for s in correct_steps], [s.function for s in wrong_steps],
                     float(correct_leaf.reward))


def merge_cross_verification(plan: MergePlan, verify_text: str) -> list[Step]:
    """shared -> wrong -> verify -> refine (+ following steps) -> output.

    The correct continuation's first step becomes <refine>; later steps whose function may
    not follow the step before them (e.g. an analysis after a refine) are folded into the
    refine's content, so the merged path obeys RL_TRANSITIONS.
    """
    if not plan.correct:
        raise ValueError("the correct path has no steps below the divergence")
    out = list(plan.shared) + list(plan.wrong) + [Step("verify", verify_text.strip())]
    refine = plan.correct[0].content
    rest = list(plan.correct[1:])
    while rest and rest[0].function not in RL_TRANSITIONS["refine"]:
        refine = f"{refine}\n{rest.pop(0).content}"
    out.append(Step("refine", refine))
    out.extend(rest)
    out.append(output_step(plan.answer))
    return out


def plain_correct(correct_leaf: TreeNode) -> list[Step]:
    return steps_of(correct_leaf) + [output_step(_leaf_answer(correct_leaf))]


def validate_steps(steps: Sequence[Step], gold: str) -> list[str]:
    """Why this response is not valid SFT data ([] if it is): it must format and parse back
    to exactly these steps, follow RL_TRANSITIONS from the root to a final <output>, and
    end with a boxed answer equal to `gold`."""
    try:
        text = format_steps(list(steps))
    except ValueError as e:
        return [f"format: {e}"]
    problems = []
    parsed = parse_steps(text)
    if not parsed.ok:
        problems += [f"parse: {p.kind} at {p.offset}: {p.detail}" for p in parsed.problems]
    elif parsed.steps != list(steps):
        problems.append("parse: the text does not read back as the same steps")
    functions = [s.function for s in steps]
    if not functions or functions[-1] != "output":
        problems.append("the response does not end with an output step")
    if not transitions_ok(functions):
        problems.append(f"transitions not allowed in RL: {' -> '.join([ROOT] + functions)}")
    answer = extract_answer(text)
    if answer is None or extract_answer(steps[-1].content if steps else "") != answer:
        problems.append("the last boxed answer is not in the output step")
    elif not is_equiv(answer, gold):
        problems.append(f"the final answer {answer!r} does not equal the gold {gold!r}")
    return problems


# (question, merge) for every merge -> the verify text of each, in one batch (a model
# call in practice; a stub in tests).
VerifyFn = Callable[[list[tuple[str, MergePlan]]], list[str]]


@dataclass
class Trajectory:
    kind: str  # "correct" or "verified"
    steps: list[Step]
    path: list[str]
    wrong_path: list[str] | None
    leaf_reward: float

    @property
    def text(self) -> str:
        return format_steps(self.steps)


def plan_tree(root: TreeNode) -> tuple[TreeNode | None, MergePlan | None]:
    """The plain correct leaf (or None) and the merge plan (or None) of one tree."""
    plain = choose_correct_leaf(root, plain=True)
    for candidate in ([plain] if plain else []) + sorted(
            (leaf for leaf in correct_leaves(root) if leaf is not plain), key=rank_key):
        wrong = choose_wrong_leaf(candidate, root)
        if wrong is not None:
            return plain, plan_merge(candidate, wrong)
    return plain, None


def build_trajectories(roots: Sequence[TreeNode], questions: Sequence[str], golds: Sequence[str],
                       verify: VerifyFn) -> tuple[list[list[Trajectory]], dict[str, int]]:
    """For each tree, its valid trajectories (plain correct first, then verified); and
    counts of what was made and dropped. `verify` is called once, for every merge."""
    plans = [plan_tree(root) for root in roots]
    merges = [(i, m) for i, (_, m) in enumerate(plans) if m is not None]
    verify_texts = verify([(questions[i], m) for i, m in merges]) if merges else []
    verify_of = {i: t for (i, _), t in zip(merges, verify_texts, strict=True)}
    out: list[list[Trajectory]] = []
    stats = {"correct": 0, "verified": 0, "dropped_invalid": 0}
    for i, (plain, merge) in enumerate(plans):
        found = []
        if plain is not None:
            steps = plain_correct(plain)
            found.append(Trajectory("correct", steps, [n.action for n in plain.path()[1:]], None, float(plain.reward)))
        if merge is not None:
            steps = merge_cross_verification(merge, verify_of[i])
            found.append(Trajectory("verified", steps, merge.correct_path, merge.wrong_path, merge.leaf_reward))
        kept = []
        for t in found:
            if validate_steps(t.steps, golds[i]):
                stats["dropped_invalid"] += 1
            else:
                kept.append(t)
                stats[t.kind] += 1
        out.append(kept)
    return out, stats
