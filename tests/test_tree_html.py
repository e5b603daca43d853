"""The sample-tree record (train/sample_trees.py) and its HTML page (train/tree_html.py),
on a real search: collect_rollouts on a tiny random model, written, rendered and parsed
back. Every node and leaf must be on the page with its visits, reward and answer, only the
chosen path highlighted, model text escaped, and nothing loaded from elsewhere."""

import json
from html.parser import HTMLParser

import pytest

from model import load_model
from model.cli import run_cli
from rftt.data import Problem
from rftt.tokens import add_functional_tokens
from search.engine import Engine
from tests.tiny_models import write_checkpoint
from train import tree_html
from train.rollouts import collect_rollouts
from train.sample_trees import write_sample_trees
from train.tree_html import reward_class, render_tree_html

ROLLOUTS = 6
PROBLEMS = [Problem("What is 2 + 3?", "5"), Problem("Tom has 4 apples and eats 1. How many are left?", "3")]


def three_level_reward(text: str, gold: str) -> float:
    """The outcome reward's three values, picked by the text, so a tiny random model's
    leaves get every colour."""
    return (0.0, 0.1, 1.0)[len(text) % 3]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """(samples, roots, records, json path) of one real search over two problems."""
    tmp = tmp_path_factory.mktemp("trees")
    write_checkpoint(tmp / "ckpt", "qwen3", seed=9)
    model, tok = load_model(tmp / "ckpt")
    add_functional_tokens(model, tok)
    engine = Engine(model, num_slots=4096)
    samples, roots = collect_rollouts(engine, tok, PROBLEMS, rollouts=ROLLOUTS, max_depth=3, max_step_tokens=6,
                                      temperature=1.0, seed=3, progress=False, reward_fn=three_level_reward,
                                      parallel_rollouts=2)
    path = tmp / "iteration_00001.json"
    records = write_sample_trees(path, PROBLEMS, samples, roots)
    return samples, roots, records, path


def walk(node: dict):
    yield node
    for child in node["children"]:
        yield from walk(child)


def generated_nodes(root):
    """The TreeNodes a rollout reached (expanded but never selected children have no step)."""
    out = [root]
    for child in root.children:
        if child.state is not None:
            out.extend(generated_nodes(child))
    return out


class NodeParser(HTMLParser):
    """Every <li> with data-node-id: its attributes, its class list, and the text inside it."""

    def __init__(self):
        super().__init__()
        self.nodes, self.open, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "li":
            attrs = dict(attrs)
            entry = {"attrs": attrs, "classes": attrs.get("class", "").split(), "text": ""}
            if "data-node-id" in attrs:
                self.nodes.append(entry)
            self.open.append(entry)

    def handle_endtag(self, tag):
        if tag == "li":
            self.open.pop()

    def handle_data(self, data):
        for entry in self.open:
            entry["text"] += data


def parse(page: str) -> NodeParser:
    parser = NodeParser()
    parser.feed(page)
    parser.close()
    return parser


def test_the_record_holds_every_node_and_leaf_of_the_search(searched):
    samples, roots, records, path = searched
    assert json.loads(path.read_text()) == records
    for i, (record, root) in enumerate(zip(records, roots)):
        assert record["question"] == PROBLEMS[i].question and record["gold"] == PROBLEMS[i].answer
        nodes = list(walk(record["tree"]))
        real = generated_nodes(root)
        assert len(nodes) == len(real) > 1
        assert [n["visits"] for n in nodes] == [r.visits for r in real]
        assert [n["action"] for n in nodes] == [r.action for r in real]
        assert record["tree"]["visits"] == ROLLOUTS
        mine = [s for s in samples if s.problem == i]
        leaves = [n for n in nodes if n.get("leaf")]
        assert len(leaves) == len(root.leaves()) == len(mine) == len(record["leaves"])
        by_id = {n["id"]: n for n in nodes}
        for flat, sample in zip(record["leaves"], mine):  # the old flat format, plus the leaf's node id
            assert {k: flat[k] for k in ("functions", "reward", "answer", "response")} == \
                   {"functions": sample.functions, "reward": sample.reward, "answer": sample.answer,
                    "response": sample.response}
            leaf = by_id[flat["node"]]
            assert (leaf["reward"], leaf["answer"], leaf["response"]) == (sample.reward, sample.answer, sample.response)
            assert leaf["text"] in sample.response and sample.functions[-1] == leaf["action"]


def test_the_chosen_path_follows_the_most_visits_from_root_to_a_leaf(searched):
    _, _, records, _ = searched
    for record in records:
        node = record["tree"]
        assert node["chosen"]
        while node["children"]:
            chosen = [c for c in node["children"] if c["chosen"]]
            assert len(chosen) == 1
            assert chosen[0]["visits"] == max(c["visits"] for c in node["children"])
            node = chosen[0]
        assert node.get("leaf")
        chosen_ids = {n["id"] for n in walk(record["tree"]) if n["chosen"]}
        assert all(node["id"].startswith(i) for i in chosen_ids)  # one path: each an ancestor of the leaf


def test_the_page_shows_every_node_with_its_visits_rewards_and_answers(searched):
    _, _, records, _ = searched
    records = json.loads(json.dumps(records))  # a copy to give answers: a random model writes no \boxed{}
    for record in records:
        for n, leaf in enumerate(n for n in walk(record["tree"]) if n.get("leaf")):
            leaf["answer"] = None if n == 0 else f"{n} <apples> & x_{n}"
    page = render_tree_html(records)
    found = parse(page).nodes
    for i, record in enumerate(records):
        mine = {e["attrs"]["data-node-id"]: e for e in found if e["attrs"]["data-problem"] == str(i)}
        nodes = list(walk(record["tree"]))
        assert sorted(mine) == sorted(n["id"] for n in nodes)
        for node in nodes:
            shown = mine[node["id"]]
            assert shown["attrs"]["data-visits"] == str(node["visits"])
            assert shown["attrs"]["data-leaf"] == ("1" if node.get("leaf") else "0")
            assert ("chosen" in shown["classes"]) == node["chosen"] == (shown["attrs"]["data-chosen"] == "1")
            assert node["text"] in shown["text"]
            if node.get("leaf"):
                assert float(shown["attrs"]["data-reward"]) == pytest.approx(node["reward"])
                assert f"{reward_class(node['reward'])}-leaf" in shown["classes"]
                assert f"reward {node['reward']:.3g}" in shown["text"]
                assert (node["answer"] or "no answer") in shown["text"]
    rewards = {leaf["reward"] for r in records for leaf in r["leaves"]}
    assert rewards == {0.0, 0.1, 1.0}  # every colour was drawn
    assert records[0]["question"] in page.replace("&#x27;", "'")


def test_model_text_is_escaped_and_nothing_is_loaded_from_elsewhere(searched):
    _, _, records, _ = searched
    records = json.loads(json.dumps(records))
    step = records[0]["tree"]["children"][0]
    step["text"] = 'so <b>bold</b> & \\frac{1}{2} < 3 "quoted"'
    page = render_tree_html(records)
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; \\frac{1}{2} &lt; 3" in page
    parser = parse(page)
    (shown,) = [e for e in parser.nodes
                if e["attrs"]["data-problem"] == "0" and e["attrs"]["data-node-id"] == step["id"]]
    assert step["text"] in shown["text"]
    assert "http" not in page and "url(" not in page and "@import" not in page
    assert not [t for t, attrs in parser.tags if t in ("script", "link", "img", "iframe") or "src" in attrs
                or "href" in attrs]


def test_the_cli_writes_the_page_next_to_the_json(searched, capsys):
    _, _, records, path = searched
    out = tree_html.main([str(path)])
    assert out == path.with_suffix(".html")
    assert out.read_text() == render_tree_html(records, title=f"RFTT sample trees: {path.name}")
    other = tree_html.main([str(path), "--out", str(path.parent / "view.html")])
    assert other.read_text() == out.read_text()


@pytest.mark.parametrize("content", [None, "{not json", '[{"leaves": []}]'])
def test_the_cli_names_a_missing_or_malformed_file(tmp_path, capsys, content):
    path = tmp_path / "iteration_00001.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as stop:
        run_cli(tree_html.main, [str(path)])
    assert stop.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {path}: ")
