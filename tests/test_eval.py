"""python -m train.eval: majority vote, greedy and MCTS accuracy, per-level breakdown."""

import json

import pytest

from rftt.tokens import add_functional_tokens
from tests.tiny_models import write_checkpoint
from train.eval import main, spread_subset
from train.inference_search import majority_answer


def test_majority_vote_normalises_and_breaks_ties_by_first_seen():
    assert majority_answer([None, None]) is None
    assert majority_answer(["3", "\\frac12", "0.5", "3"]) in ("3", "\\frac12")
    assert majority_answer(["\\frac12", "3", "0.5", "1/2"]) == "\\frac12"  # 1/2 three times (normalised)
    assert majority_answer(["7", "5", None]) == "7"  # a tie: the first one found


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model saved with the functional tokens, as train.sft would export it."""
    from model import load_model, save_pretrained

    path = tmp_path_factory.mktemp("eval") / "model"
    write_checkpoint(path, "qwen2", seed=4)
    model, tok = load_model(path)
    add_functional_tokens(model, tok)
    save_pretrained(model, tok, path)
    return path


def test_greedy_and_mcts_accuracy_summary(trained, tmp_path, capsys):
    summary = main(["--model", str(trained), "--data", "arith", "--limit", "3", "--rollouts", "2,1",
                    "--depth", "2", "--max-step-tokens", "4", "--max-new-tokens", "8", "--out", str(tmp_path), "--json"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == summary == json.loads((tmp_path / "eval.json").read_text())
    assert summary["problems"] == 3 and set(summary["mcts"]) == {"1", "2"}
    for acc in [summary["greedy"]["accuracy"]] + [v["accuracy"] for v in summary["mcts"].values()]:
        assert 0.0 <= acc <= 1.0
    samples = (tmp_path / "greedy_samples.jsonl").read_text().splitlines()
    assert len(samples) == 3 and all("response" in json.loads(s) for s in samples)
    searches = [json.loads(line) for line in (tmp_path / "mcts_samples.jsonl").read_text().splitlines()]
    assert len(searches) == 3
    for budget in ("1", "2"):  # the records hold the very votes the accuracy counts
        assert sum(r["votes_correct"][budget] for r in searches) / 3 == summary["mcts"][budget]["accuracy"]
    for r in searches:
        leaves = r["leaves"]
        assert sum(leaf["visits"] for leaf in leaves) == 2  # every rollout ended at one of them
        assert r["votes"]["2"] == majority_answer([leaf["answer"] for leaf in leaves])  # the last budget's vote
        for leaf in leaves:
            assert leaf["functions"] and leaf["last_step"] in ("close", "length", "eos", "malformed")
            assert leaf["correct"] is False or leaf["answer"] is not None
    assert summary["mcts_leaves"]["leaves_per_problem"] == round(sum(len(r["leaves"]) for r in searches) / 3, 2)
    assert sum(summary["mcts_leaves"]["last_step"].values()) == sum(len(r["leaves"]) for r in searches)


def test_an_even_spread_keeps_each_levels_share():
    ordered = [lv for lv in (1, 2, 3, 4) for _ in range(50)]  # train.reproduce's held-out file: by level
    picked = spread_subset(ordered, 32)
    assert len(picked) == 32 and {lv: picked.count(lv) for lv in (1, 2, 3, 4)} == {1: 8, 2: 8, 3: 8, 4: 8}
    assert spread_subset(ordered, None) == ordered and spread_subset(ordered, 999) == ordered
    assert spread_subset(list("abcde"), 2) == ["a", "c"]


def test_mcts_on_a_subset_reports_its_size_and_greedy_on_the_same_problems(trained, tmp_path):
    rows = [{"problem": f"What is {i} + {i}?", "solution": f"It is $\\boxed{{{2 * i}}}$.",
             "level": f"Level {1 + i // 2}"} for i in range(4)]
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = main(["--model", str(trained), "--data", str(data), "--rollouts", "1,2", "--mcts-limit", "2",
                    "--depth", "2", "--max-step-tokens", "4", "--max-new-tokens", "4", "--out", str(tmp_path / "out")])
    assert summary["problems"] == 4 and summary["mcts_problems"] == 2
    records = [json.loads(line) for line in (tmp_path / "out" / "greedy_samples.jsonl").read_text().splitlines()]
    on_subset = [records[0]["correct"], records[2]["correct"]]  # problems 0 and 2: one of each level
    assert summary["greedy_on_mcts_problems"]["accuracy"] == sum(on_subset) / 2
    for b in ("1", "2"):
        assert {lv: g["n"] for lv, g in summary["mcts"][b]["level"].items()} == {"1": 1, "2": 1}


def test_math_files_get_per_level_and_type_accuracy(trained, tmp_path):
    rows = [{"problem": f"What is {i} + {i}?", "solution": f"It is $\\boxed{{{2 * i}}}$.",
             "level": f"Level {1 + i % 2}", "type": ["Algebra", "Prealgebra"][i % 2]} for i in range(4)]
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = main(["--model", str(trained), "--data", str(data), "--rollouts", "", "--max-new-tokens", "4",
                    "--out", str(tmp_path / "out")])
    greedy = summary["greedy"]
    assert set(greedy["level"]) == {"1", "2"} and set(greedy["type"]) == {"Algebra", "Prealgebra"}
    assert sum(g["n"] for g in greedy["level"].values()) == 4 and summary["mcts"] == {}


def test_bad_rollouts_are_rejected(trained):
    with pytest.raises(SystemExit):
        main(["--model", str(trained), "--rollouts", "1,x"])


def test_a_rerun_reads_the_saved_greedy_answers_back_unless_what_they_depend_on_changed(trained, tmp_path,
                                                                                         monkeypatch):
    import train.eval as eval_module
    from train.accuracy import greedy_accuracy

    def run(limit: int, cap: int) -> dict:
        return main(["--model", str(trained), "--data", "arith", "--limit", str(limit), "--rollouts", "",
                     "--max-new-tokens", str(cap), "--out", str(tmp_path)])

    first = run(3, 6)
    saved = (tmp_path / "greedy_samples.jsonl").read_text()
    decoded = []

    def counting(*a, **k):
        decoded.append(1)
        return greedy_accuracy(*a, **k)

    monkeypatch.setattr(eval_module, "greedy_accuracy", counting)
    again = run(3, 6)
    assert decoded == [] and again["greedy"] == first["greedy"]
    assert (tmp_path / "greedy_samples.jsonl").read_text() == saved
    run(3, 7)  # another response cap: decoded afresh
    assert len(decoded) == 1
    run(4, 7)  # other problems: afresh
    assert len(decoded) == 2
    run(4, 7)
    assert len(decoded) == 2
    (tmp_path / "greedy_key.json").unlink()  # as if killed between writing the answers and their key
    run(4, 7)
    assert len(decoded) == 3


def test_saved_greedy_answers_are_tied_to_the_model_files(trained, tmp_path):
    import shutil

    from model import load_model
    from rftt.data import load_problems
    from train.saved_greedy import greedy_key, load_saved_greedy, save_greedy

    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)
    _, tok = load_model(model_dir)
    problems = load_problems("arith", "test", n=2, seed=0)[:2]
    key = greedy_key(str(model_dir), tok, "cpu", problems, 8)
    records = [{"response": "\\boxed{1}"}, {"response": "\\boxed{2}"}]
    save_greedy(tmp_path, key, records)
    assert load_saved_greedy(tmp_path, key) == records
    assert load_saved_greedy(tmp_path, greedy_key(str(model_dir), tok, "cuda", problems, 8)) is None
    assert load_saved_greedy(tmp_path, greedy_key(str(model_dir), tok, "cpu", problems[:1], 8)) is None
    config = model_dir / "config.json"
    config.write_text(config.read_text() + " ")  # the model's files changed (retrained, say)
    assert load_saved_greedy(tmp_path, greedy_key(str(model_dir), tok, "cpu", problems, 8)) is None


def test_the_function_floor_reaches_the_search(trained, tmp_path, monkeypatch):
    """--min-function-prob reaches the search's environment (default 0: every allowed
    function; 0.05 searches the tree train.ppo's default preset trains on)."""
    import rftt.functional_search as functional_search

    seen = []
    real_init = functional_search.FunctionalTokenEnv.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["min_function_prob"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(functional_search.FunctionalTokenEnv, "__init__", spy)
    argv = ["--model", str(trained), "--data", "arith", "--limit", "2", "--rollouts", "1", "--depth", "2",
            "--max-step-tokens", "4", "--max-new-tokens", "4"]
    main([*argv, "--out", str(tmp_path / "default")])
    main([*argv, "--out", str(tmp_path / "floor"), "--min-function-prob", "0.05"])
    assert seen == [0.0, 0.05]
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path / "bad"), "--min-function-prob", "2"])
