"""See the search: one PPO iteration's sample trees as a single self-contained HTML page.

    python -m train.tree_html runs/ppo/samples/iteration_00001.json   # writes iteration_00001.html
    python -m train.tree_html runs/ppo/samples/iteration_00001.json --out /tmp/view.html

The input is what train.ppo writes each iteration (train/sample_trees.py). Per problem
the page shows the question and gold answer, then the functional-token tree as nested,
collapsible lists (HTML <details>: no script): each step its tag, its own text, its
visits N and mean value Q; each leaf its answer and reward, coloured by the paper's
outcome reward (1 correct, 0.1 a wrong answer, 0 no answer); the path a greedy reading of
the search picks (most visits at each level) is highlighted. train.ppo writes this page
next to each JSON file as it goes.

The page loads nothing: inline CSS, no script, no fonts, no network, so it opens from a
file anywhere. All model text is HTML-escaped (steps are full of `<`, `>` and LaTeX).
Every node element carries data-node-id, data-visits, data-value, data-leaf and
data-chosen (and leaves data-reward), so tools and tests can read the page back.
"""

from __future__ import annotations

import argparse
import json
from html import escape
from pathlib import Path

from model.cli import HelpFormatter, add_debug_flag, run_cli

# Function tag -> badge colour; the order of the paper's functions (DESIGN.md).
TAG_COLOURS = {
    "clarify": "#6a4c93", "analysis": "#1982c4", "subquestion": "#8ac926", "next_step": "#4361ee",
    "direct_answer": "#ff924c", "verify": "#c9184a", "refine": "#2a9d8f", "output": "#333333",
}

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 24px; color: #1d1d1f;
       background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; }
.legend { color: #555; margin-bottom: 12px; }
.legend span { display: inline-block; padding: 0 6px; border-radius: 3px; margin-right: 6px; }
section.problem { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 16px;
                  margin-bottom: 18px; }
.question { white-space: pre-wrap; font-size: 15px; margin: 4px 0; }
.gold, .summary { color: #333; margin: 2px 0; }
.gold b { color: #1b7f3b; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 22px; }
ul.tree { padding-left: 0; margin-top: 8px; }
ul.tree ul > li { position: relative; }
ul.tree ul > li::before { content: ""; position: absolute; left: -14px; top: 0; bottom: 0;
                          border-left: 1px solid #bbb; }
ul.tree ul > li:last-child::before { bottom: auto; height: 14px; }
ul.tree ul > li::after { content: ""; position: absolute; left: -14px; top: 14px; width: 10px;
                         border-top: 1px solid #bbb; }
li.node { margin: 6px 0; }
h2 { font-size: 17px; margin: 0 0 4px; }
.box { border: 1px solid #ccc; border-left: 4px solid #ccc; border-radius: 4px; padding: 3px 8px;
       background: #fff; max-width: 1100px; }
/* The chosen path: a blue outline and tint; a leaf's left edge keeps its reward colour. */
li.chosen > .box, li.chosen > details > summary > .box { background: #eaf2fd; box-shadow: 0 0 0 2px #1565c0; }
summary { cursor: pointer; }
summary.fold { list-style: none; display: block; }
summary.fold::-webkit-details-marker { display: none; }
.fold-mark { color: #888; font-size: 12px; margin-left: 8px; }
details[open] > summary .fold-mark::before { content: "▾ fold "; }
details:not([open]) > summary .fold-mark::before { content: "▸ show "; }
details.response summary { font-size: 12px; color: #555; list-style-position: inside; }
.tag { display: inline-block; color: #fff; border-radius: 3px; padding: 0 6px; font-family: ui-monospace, monospace;
       font-size: 12px; }
.stats { color: #555; font-size: 12px; margin-left: 8px; font-family: ui-monospace, monospace; }
.stop { color: #b45309; font-size: 12px; margin-left: 6px; }
.mark { color: #1565c0; font-weight: 600; font-size: 12px; margin-left: 6px; }
.text { white-space: pre-wrap; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px;
        margin: 3px 0 1px; max-height: 12em; overflow: auto; color: #222; }
.empty { color: #999; font-style: italic; }
.result { font-size: 13px; margin-top: 2px; }
.reward { display: inline-block; border-radius: 3px; padding: 0 6px; font-weight: 600; }
.correct { background: #c8f0d2; color: #0f5c2a; }
.wrong { background: #ffe3b3; color: #7a4a00; }
.none { background: #f6d0d0; color: #7d1a1a; }
li.leaf.correct-leaf > .box { border-left-color: #22a35a; }
li.leaf.wrong-leaf > .box { border-left-color: #e09b19; }
li.leaf.none-leaf > .box { border-left-color: #cc4b4b; }
"""


# How a step ended, when not by its own closing tag (rftt/functional_search.py: StepState.stop).
STOP_NOTES = {"length": "cut off at the step cap", "eos": "ended by EOS", "malformed": "malformed: another tag"}


def reward_class(reward: float) -> str:
    """The paper's outcome reward: 1 correct, 0.1 an answer that is wrong, 0 no answer.
    A custom reward (--reward-fn) is shown on the same scale: 1 or more correct, above 0
    partial, 0 or less none."""
    return "correct" if reward >= 1 else "wrong" if reward > 0 else "none"


def _node_html(node: dict, problem: int) -> str:
    leaf = bool(node.get("leaf"))
    classes = ["node"] + (["leaf", reward_class(node["reward"]) + "-leaf"] if leaf else []) + \
              (["chosen"] if node["chosen"] else [])
    attrs = {"class": " ".join(classes), "data-problem": problem, "data-node-id": node["id"],
             "data-action": node["action"] or "root", "data-visits": node["visits"],
             "data-value": f"{node['value']:.4g}", "data-leaf": int(leaf), "data-chosen": int(node["chosen"])}
    if leaf:
        attrs["data-reward"] = f"{node['reward']:.4g}"
    attr_text = " ".join(f'{k}="{escape(str(v))}"' for k, v in attrs.items())

    tag = node["action"] or "root"
    colour = TAG_COLOURS.get(tag, "#777")
    head = (f'<span class="tag" style="background:{colour}">{escape(tag)}</span>'
            f'<span class="stats">N={node["visits"]} Q={node["value"]:.3f}</span>')
    if node.get("stop") in STOP_NOTES:
        head += f'<span class="stop">{STOP_NOTES[node["stop"]]}</span>'
    if node["chosen"]:
        head += '<span class="mark">chosen</span>'
    if node["action"] is None:
        body = ""  # the root: the question is shown above the tree
    elif node["text"].strip():
        body = f'<div class="text">{escape(node["text"])}</div>'
    else:
        body = '<div class="text empty">(empty step)</div>'
    if leaf:
        answer = _answer_html(node)
        cls = reward_class(node["reward"])
        body += (f'<div class="result">answer: {answer} '
                 f'<span class="reward {cls}">reward {node["reward"]:.3g}</span></div>'
                 f'<details class="response"><summary>whole response</summary>'
                 f'<div class="text">{escape(node.get("response") or "")}</div></details>')
    if not node["children"]:
        return f'<li {attr_text}><div class="box">{head}{body}</div></li>'
    n = len(node["children"])
    head += f'<span class="fold-mark">{n} {"child" if n == 1 else "children"}</span>'
    kids = "".join(_node_html(child, problem) for child in node["children"])
    # The node's own box is the <summary>: clicking it folds the subtree, the step stays.
    return (f'<li {attr_text}><details open><summary class="fold"><div class="box">{head}{body}</div></summary>'
            f'<ul>{kids}</ul></details></li>')


def _problem_html(record: dict, index: int) -> str:
    if "tree" not in record:
        raise ValueError(f"problem {index} has no 'tree' (written by a train.ppo older than the tree record)")
    leaves = record.get("leaves", [])
    correct = sum(1 for leaf in leaves if leaf["reward"] >= 1)
    chosen = _chosen_leaf(record["tree"])
    chosen_text = "" if chosen is None else (
        f' · chosen path: {_answer_html(chosen)} (reward {chosen["reward"]:.3g})')
    return (f'<section class="problem" id="problem-{index}" data-problem="{index}">'
            f'<h2>Problem {index + 1}</h2>'
            f'<div class="question">{escape(record["question"])}</div>'
            f'<div class="gold">gold answer: <b>{escape(str(record["gold"]))}</b></div>'
            f'<div class="summary">{record["tree"]["visits"]} rollouts, {len(leaves)} distinct leaves, '
            f'{correct} correct{chosen_text}</div>'
            f'<ul class="tree">{_node_html(record["tree"], index)}</ul></section>')


def _answer_html(leaf: dict) -> str:
    if leaf.get("answer") is None:
        return '<span class="empty">no answer</span>'
    return f'<b class="answer">{escape(leaf["answer"])}</b>'


def _chosen_leaf(node: dict) -> dict | None:
    for child in node["children"]:
        if child["chosen"]:
            return _chosen_leaf(child)
    return node if node.get("leaf") else None


def render_tree_html(records: dict | list[dict], title: str = "RFTT sample trees") -> str:
    """The page for one problem's record or a list of them (a whole samples file)."""
    records = [records] if isinstance(records, dict) else list(records)
    legend = ("".join(f'<span style="background:{c};color:#fff">{escape(t)}</span>' for t, c in TAG_COLOURS.items())
              + ' &nbsp; N visits, Q mean value &nbsp; <span class="reward correct">1 correct</span>'
              '<span class="reward wrong">0.1 wrong answer</span><span class="reward none">0 no answer</span>'
              '<span style="background:#eaf2fd;border:1px solid #1565c0">chosen: most visits per level</span>')
    sections = "".join(_problem_html(r, i) for i, r in enumerate(records))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{escape(title)}</h1><div class="legend">{legend}</div>'
            f'{sections}</body></html>\n')


def read_records(path: Path) -> list[dict]:
    """A samples file's records; a missing or malformed file raises one line naming it."""
    try:
        text = path.read_text()
    except OSError as e:
        raise OSError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    records = [records] if isinstance(records, dict) else records
    if not isinstance(records, list) or not all(isinstance(r, dict) and "question" in r for r in records):
        raise ValueError(f"{path}: not a train.ppo samples file (expected a list of problems with 'question')")
    return records


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m train.tree_html", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("samples", type=Path, help="a samples file train.ppo wrote: OUT/samples/iteration_NNNNN.json")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the page (default: the samples file with .html for .json)")
    add_debug_flag(p)
    args = p.parse_args(argv)
    records = read_records(args.samples)
    try:
        page = render_tree_html(records, title=f"RFTT sample trees: {args.samples.name}")
    except (KeyError, TypeError) as e:
        raise ValueError(f"{args.samples}: a node lacks a field the page needs ({e})") from None
    except ValueError as e:
        raise ValueError(f"{args.samples}: {e}") from None
    out = args.out or args.samples.with_suffix(".html")
    out.write_text(page)
    print(out)
    return out


if __name__ == "__main__":
    run_cli(main)
