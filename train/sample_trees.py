"""One PPO iteration's search trees as JSON: what the rollouts explored, not only where
they ended.

Per problem the file holds the question, the gold answer, the flat list of `leaves` (one
per sample: functions, reward, answer, response — the format train.ppo always wrote) and
the nested `tree` the functional-token MCTS built (rftt/functional_search.py):

    {"id": "0.2.0", "action": "next_step", "text": <the step's own content>, "stop": "close",
     "visits": 3, "value": 0.4, "prior": 0.21, "chosen": true, "children": [...],
     # leaves only (nodes a rollout ended at):
     "leaf": true, "reward": 0.1, "answer": "12", "response": <the whole path's text>}

`id` is the path of child indices from the root ("0"), so it names a node within its
tree. `chosen` marks the path a greedy reading of the search would pick: from the root,
the most visited child at each level, ties broken by mean value (train/tree_html.py
highlights it).

Everything is read from the tree nodes and the samples, not from the engine: by the time
train.ppo writes this (block 8) the PPO update has bumped the engine's weight version,
which drops every cached branch, so `engine.text_tokens` no longer works. A step's own
text is kept on its node (`state.step.content`, without the framing tags); a leaf's whole
response and answer are on its sample.
"""

from __future__ import annotations

import json
from pathlib import Path

from rftt.data import Problem
from search.mcts import TreeNode
from train.rollouts import Sample


def generated_children(node: TreeNode) -> list[TreeNode]:
    """The children a rollout actually reached. Expanding a node creates every allowed
    child at once (search/mcts.py); those never selected have no step and are left out."""
    return [child for child in node.children if child.state is not None]


def chosen_path(root: TreeNode) -> list[TreeNode]:
    """Root to leaf, taking the most visited child at each level (ties: higher mean
    value, then the environment's ranking, i.e. the first in order)."""
    path = [root]
    while kids := generated_children(path[-1]):
        path.append(max(kids, key=lambda ch: (ch.visits, ch.value)))
    return path


def tree_record(root: TreeNode, samples: list[Sample]) -> dict:
    """The nested record of one problem's tree. `samples` are that problem's samples in
    the order train/rollouts.py made them: one per leaf, in `root.leaves()` order."""
    leaves = root.leaves()
    if len(leaves) != len(samples):
        raise ValueError(f"the tree has {len(leaves)} leaves but {len(samples)} samples were given")
    sample_of = {}
    for leaf, sample in zip(leaves, samples):
        if [n.action for n in leaf.path()[1:]] != sample.functions:
            raise ValueError(f"sample functions {sample.functions} do not follow the tree's leaf order")
        sample_of[id(leaf)] = sample
    chosen = {id(n) for n in chosen_path(root)}

    def record(node: TreeNode, node_id: str) -> dict:
        step = node.state.step if node.state is not None else None  # the root has no step
        out = {"id": node_id, "action": node.action, "text": step.content if step else "",
               "stop": node.state.stop if node.state is not None else None,
               "visits": node.visits, "value": node.value, "prior": node.prior, "chosen": id(node) in chosen}
        if id(node) in sample_of:
            sample = sample_of[id(node)]
            out.update(leaf=True, reward=node.reward, answer=sample.answer, response=sample.response)
        out["children"] = [record(child, f"{node_id}.{i}") for i, child in enumerate(generated_children(node))]
        return out

    return record(root, "0")


def leaf_ids(tree: dict) -> list[str]:
    """The ids of a tree record's leaves, depth first (the order of `root.leaves()`)."""
    own = [tree["id"]] if tree.get("leaf") else []
    return own + [i for child in tree["children"] for i in leaf_ids(child)]


def sample_tree_records(problems: list[Problem], samples: list[Sample], roots: list[TreeNode] | None) -> list[dict]:
    """One record per problem: question, gold, the flat `leaves` (each also naming its
    tree `node`) and the nested `tree`. Without `roots` (samples drawn with no search,
    train.ppo --rollout-search sampling) only question, gold and the flat leaves."""
    if roots is None:
        return [{"question": p.question, "gold": p.answer,
                 "leaves": [{"functions": s.functions, "reward": s.reward, "answer": s.answer, "response": s.response}
                            for s in samples if s.problem == i]} for i, p in enumerate(problems)]
    records = []
    for i, (problem, root) in enumerate(zip(problems, roots, strict=True)):
        mine = [s for s in samples if s.problem == i]
        tree = tree_record(root, mine)
        leaves = [{"functions": s.functions, "reward": s.reward, "answer": s.answer, "response": s.response,
                   "node": node_id} for s, node_id in zip(mine, leaf_ids(tree), strict=True)]
        records.append({"question": problem.question, "gold": problem.answer, "leaves": leaves, "tree": tree})
    return records


def write_sample_trees(path: Path, problems: list[Problem], samples: list[Sample],
                       roots: list[TreeNode] | None) -> list[dict]:
    """Writes the records as JSON to `path`; returns them (for the HTML view)."""
    records = sample_tree_records(problems, samples, roots)
    Path(path).write_text(json.dumps(records, indent=1))
    return records
