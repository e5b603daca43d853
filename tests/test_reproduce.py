"""python -m train.reproduce on the tiny preset: the whole table with every ablation,
a run stopped after a stage and started again (finished stages skipped, same figures),
a finished stage asked to run with other settings (refused, named), the Wilson
intervals against hand-computed values, and train.sft --no-merges."""

import json
import subprocess
from argparse import Namespace

import pytest

from rftt.data import generate_arithmetic
from rftt.solution_steps import reference_rows
from rftt.sft_data import write_jsonl
from train import ppo, reproduce, sft
from train.intervals import figure, wilson_interval
from train.learning import markdown_search_leaves, markdown_table, model_figures
from train.side_by_side import markdown as side_by_side_markdown
from train.side_by_side import pick_problems
from train.stages import StageSettingsChanged, flag_values, settings_differences

TINY = ["--preset", "tiny", "--device", "cpu"]
CORE_STAGES = ["base_model", "heldout", "eval_base", "sft", "eval_sft", "ppo", "eval_ppo"]
MODELS = ["base", "sft", "ppo", "ppo_no_sft", "ppo_sampling", "ppo_no_merges"]


# ------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),     # centre = half = (z²/2n) / (1 + z²/n) = 0.19207 / 1.38415
    (10, 10, 0.7225, 1.0),    # the mirror image of 0/10
    (5, 10, 0.2366, 0.7634),  # 0.5 ± 1.96·sqrt(0.025 + 0.0096) / 1.38415
    (1, 1, 0.2065, 1.0),
])
def test_wilson_interval_matches_hand_computed_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_nothing_is_everything_and_bad_counts_are_refused():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert figure(0, 0) == {"accuracy": 0.0, "correct": 0, "n": 0, "ci95": [0.0, 1.0]}
    assert figure(5, 10)["ci95"] == [0.2366, 0.7634]
    for k, n in ((3, 2), (-1, 4), (0, -1)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)


# ----------------------------------------------------------------- stage settings


def test_settings_differences_name_each_flag_that_changed():
    assert flag_values(["--epochs", "2", "--no-eval", "--lr=1e-3", "--epochs", "3"]) == \
        {"--epochs": "3", "--no-eval": "", "--lr": "1e-3"}
    diff = settings_differences({"argv": ["--epochs", "2", "--no-eval"]}, {"argv": ["--epochs", "3"]})
    assert diff == ["--epochs: '2' before, '3' now", "--no-eval: '' before, '(absent)' now"]
    assert settings_differences({"levels": [1, 2]}, {"levels": [1, 2]}) == []


def test_the_table_shows_every_model_and_budget_with_intervals():
    models = {"base": {"n": 10, "greedy": figure(5, 10), "mcts": {"1": figure(0, 10), "16": figure(10, 10)}}}
    table = markdown_table(models)
    assert "| model | n | greedy | MCTS@1 | MCTS@16 |" in table
    assert "| base | 10 | 50.0 [23.7, 76.3] | 0.0 [0.0, 27.8] | 100.0 [72.2, 100.0] |" in table


def test_mcts_on_a_subset_gets_its_own_n_and_the_table_says_so():
    summary = {"problems": 8, "mcts_problems": 4, "greedy": {"accuracy": 0.5},
               "greedy_on_mcts_problems": {"accuracy": 0.25}, "mcts": {"1": {"accuracy": 0.75}}}
    m = model_figures(summary, levels=[2])
    assert (m["n"], m["mcts_n"]) == (8, 4)
    assert m["greedy"]["correct"] == 4 and m["mcts"]["1"]["correct"] == 3 and m["mcts"]["1"]["n"] == 4
    assert m["greedy_on_mcts_problems"] == figure(1, 4)
    assert m["levels"]["2"]["n"] == 8 and m["levels"]["2"]["mcts_n"] == 4
    table = markdown_table({"base": m})
    assert "| model | n | greedy | MCTS n | greedy on those | MCTS@1 |" in table
    assert f"| base | 8 | 50.0 [{100 * figure(4, 8)['ci95'][0]:.1f}," in table and "| 4 | 25.0 [" in table


def test_the_searches_table_shows_each_models_leaf_totals():
    leaves = {"leaves_per_problem": 2.5, "answered": 0.6, "correct": 0.2, "problems_with_a_correct_leaf": 0.5,
              "last_step": {"open length": 1, "terminal close": 4}}
    summary = {"problems": 2, "greedy": {"accuracy": 0.5}, "mcts": {"1": {"accuracy": 0.5}}, "mcts_leaves": leaves}
    m = model_figures(summary, levels=[1])
    assert m["search_leaves"] == leaves
    assert markdown_search_leaves({"sft": m}).splitlines()[2] == \
        "| sft | 2.5 | 60.0 | 20.0 | 50.0 | open length 1, terminal close 4 |"
    del summary["mcts_leaves"]
    assert markdown_search_leaves({"base": model_figures(summary, [1])}) == ""


# ----------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "whole"
    learning = reproduce.main([*TINY, "--out", str(out), "--ablations", "no-sft,sampling,no-merges"])
    return out, learning


def _figures(learning: dict, models=("base", "sft", "ppo")) -> dict:
    return {"models": {m: learning["models"][m] for m in models},
            "rl": [(c["iteration"], c["reward"], c["accuracy"]) for c in learning["rl"]["ppo"]]}


def test_the_whole_pipeline_writes_learning_json_with_every_key(whole):
    out, learning = whole
    assert json.loads((out / "learning.json").read_text()) == learning
    assert learning["complete"] and learning["pending"] == []
    page = (out / "learning.md").read_text()
    assert "| ppo_no_merges | 4 |" in page and "## What the models write (greedy)" in page
    assert "## What the searches found" in page
    for name, m in learning["models"].items():
        assert m["search_leaves"]["leaves_per_problem"] > 0, name
    assert learning["commit"] is None or len(learning["commit"]) == 40
    assert learning["held_out"]["per_level"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert list(learning["models"]) == MODELS
    for name, m in learning["models"].items():
        assert m["n"] == 4, name
        assert set(m["mcts"]) == {"1", "4", "16"}
        for fig in [m["greedy"], *m["mcts"].values()]:
            assert set(fig) == {"accuracy", "correct", "n", "ci95"}
            assert fig["ci95"][0] <= fig["accuracy"] <= fig["ci95"][1]
        assert set(m["levels"]) == {"1", "2", "3", "4"}
        for level in m["levels"].values():
            assert level["n"] == 1 and level["greedy"]["n"] == 1 and set(level["mcts"]) == {"1", "4", "16"}
    stages = learning["stages"]
    assert list(stages) == CORE_STAGES + ["ppo_no_sft", "eval_ppo_no_sft", "ppo_sampling", "eval_ppo_sampling",
                                          "sft_no_merges", "ppo_no_merges", "eval_ppo_no_merges"]
    for name, s in stages.items():
        assert s["wall_s"] >= 0 and (out / name / "done.json").is_file(), name
    for name in ("sft", "ppo", "ppo_no_sft", "ppo_sampling", "sft_no_merges", "ppo_no_merges"):
        assert (out / name / "final" / "config.json").is_file(), name  # the model stays ...
        assert not (out / name / "checkpoints").exists(), name  # ... its checkpoints are gone
    assert stages["sft"]["command"].startswith("python -m train.sft --model ")
    assert "--no-force-answer" in stages["sft"]["settings"]["argv"]
    assert "--rollout-search sampling" in stages["ppo_sampling"]["command"]
    assert "--no-merges" in stages["sft_no_merges"]["settings"]["argv"]
    assert f"--model {out / 'base_model' / 'model'}" in stages["ppo_no_sft"]["command"]
    assert [(g["model"], g["over"]) for g in learning["gains"]] == reproduce.GAIN_PAIRS
    for g in learning["gains"]:
        assert g["n"] == 4 and g["gained"] + g["lost"] <= 4 and 0 < g["mcnemar_p"] <= 1
        right = {m: learning["models"][m]["greedy"]["correct"] for m in (g["model"], g["over"])}
        assert g["difference"] == pytest.approx((right[g["model"]] - right[g["over"]]) / 4)
    assert "## Paired gains (greedy, the same problems)" in page and "| ppo | ppo_sampling |" in page
    times = page[page.index("## Stages"):page.index("## What the models write")]
    assert [line.split(" | ")[0][2:] for line in times.splitlines()[4:-1]] == list(stages)  # one row each, in order
    assert "resumed" not in times.split("|---|")[1]
    assert set(learning["rl"]) == {"ppo", "ppo_no_sft", "ppo_sampling", "ppo_no_merges"}
    assert [c["iteration"] for c in learning["rl"]["ppo"]] == [1, 2]
    assert {"reward", "accuracy", "samples"} <= set(learning["rl"]["ppo"][0])


def test_a_stopped_run_skips_finished_stages_when_rerun_and_gives_the_same_figures(whole, tmp_path, monkeypatch):
    """Stopped after the SFT stage, then killed inside PPO after its first iteration's
    checkpoint, then run to the end: finished stages never run again, PPO resumes from
    its checkpoint, and the figures (and PPO's last iteration) equal an uninterrupted run's."""
    out = tmp_path / "stopped"
    argv = [*TINY, "--out", str(out)]
    with pytest.raises(SystemExit) as stopped:
        reproduce.main([*argv, "--stop-after-stage", "sft"])
    assert stopped.value.code == 3
    assert (out / "sft" / "done.json").is_file() and not (out / "eval_sft").exists()
    so_far = json.loads((out / "learning.json").read_text())  # the table to date, written after every stage
    assert not so_far["complete"] and so_far["pending"][:2] == ["eval_sft", "ppo"]
    assert list(so_far["models"]) == ["base"] and list(so_far["stages"]) == CORE_STAGES[:4]
    assert "Not finished yet: eval_sft, ppo, eval_ppo." in (out / "learning.md").read_text()
    assert so_far["models"]["base"] == whole[1]["models"]["base"]
    finished = {name: (out / name / "done.json").stat().st_mtime_ns for name in CORE_STAGES[:4]}

    calls = []
    real_sft, real_ppo = sft.main, ppo.main
    monkeypatch.setattr(sft, "main", lambda a: calls.append(a) or real_sft(a))
    monkeypatch.setattr(ppo, "main", lambda a: real_ppo([*a, "--stop-after", "1"]))  # killed mid-stage
    with pytest.raises(SystemExit):
        reproduce.main(argv)
    assert (out / "ppo" / "settings.json").is_file() and not (out / "ppo" / "done.json").exists()
    assert (out / "ppo" / "checkpoints").is_dir() and not (out / "sft" / "checkpoints").exists()

    monkeypatch.setattr(ppo, "main", real_ppo)
    learning = reproduce.main([*argv, "--keep-checkpoints"])
    assert (out / "ppo" / "checkpoints").is_dir()  # kept on request
    page = (out / "learning.md").read_text()
    times = page[page.index("## Stages"):page.index("## What the models write")]
    ppo_row = next(line for line in times.splitlines() if line.startswith("| ppo | "))
    assert ppo_row.endswith("| 2 runs, their times summed |")
    clock = json.loads((out / "ppo" / "clock.json").read_text())["runs"]
    assert len(clock) == 2 and learning["stages"]["ppo"]["wall_s"] == pytest.approx(sum(r["seconds"] for r in clock))
    assert calls == []  # the finished SFT stage did not run again
    assert {name: (out / name / "done.json").stat().st_mtime_ns for name in finished} == finished
    assert learning["stages"]["ppo"]["resumed"] and not learning["stages"]["sft"]["resumed"]
    assert _figures(learning) == _figures(whole[1])
    done = json.loads((out / "ppo" / "done.json").read_text())["result"]
    first = json.loads((whole[0] / "ppo" / "done.json").read_text())["result"]
    for key in ("reward", "accuracy", "kl", "entropy", "grad_norm"):
        assert done[key] == pytest.approx(first[key], rel=1e-6, abs=1e-9), key


def test_a_finished_stage_with_other_settings_is_refused_naming_the_stage(whole):
    out = whole[0]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/done.json")}
    with pytest.raises(StageSettingsChanged, match=r"stage 'sft' .*--epochs: '1' before, '2' now"):
        reproduce.main([*TINY, "--out", str(out), "--sft-args", "--epochs 2"])
    with pytest.raises(StageSettingsChanged, match=r"stage 'heldout' .*problems: 4 before, 6 now"):
        reproduce.main([*TINY, "--out", str(out), "--eval-problems", "6"])
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/done.json")} == before  # nothing ran


# ------------------------------------------------------------- train.sft --no-merges


def test_sft_no_merges_drops_the_cross_verified_rows(tmp_path):
    rows = reference_rows(generate_arithmetic(3, "train", seed=2))
    rows[1] = dict(rows[1], kind="verified")  # a merge in all but how it was written
    path = tmp_path / "rows.jsonl"
    write_jsonl(str(path), rows)
    for drop, kinds in ((False, ["reference", "verified", "reference"]), (True, ["reference", "reference"])):
        args = Namespace(data=str(path), no_merges=drop)
        kept = sft.build_or_load_rows(args, tmp_path, None, None, [], is_main=True)
        assert [r["kind"] for r in kept] == kinds
    assert sft.parse_args(["--no-merges"]).no_merges and not sft.parse_args([]).no_merges


def test_the_plot_is_written_when_matplotlib_is_there(whole, tmp_path):
    pytest.importorskip("matplotlib")
    from train.learning_plot import plot_learning

    assert (whole[0] / "learning.png").is_file()
    models = {"base": {"n": 4, "greedy": figure(1, 4), "mcts": {"1": figure(0, 4), "4": figure(2, 4)}}}
    assert plot_learning(models, {"ppo": whole[1]["rl"]["ppo"]}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


# ------------------------------------------------------------ side by side


def _records(flags: list[bool], responses: list[str] | None = None) -> list[dict]:
    responses = responses or [f"answer {i}" for i in range(len(flags))]
    return [{"question": f"q{i}", "gold": str(i), "response": r, "answer": str(i) if c else "x", "correct": c}
            for i, (c, r) in enumerate(zip(flags, responses))]


def test_side_by_side_picks_fixed_then_self_corrected_then_broken_problems():
    #            problem: 0      1      2      3      4
    base = _records([True, False, True, False, True])
    sft = _records([True, False, False, True, True], ["a", "b", "c", "d", "<verify>\nslip\n</verify>"])
    ppo = _records([True, True, False, True, True])
    samples = {"base": base, "sft": sft, "ppo": ppo}
    assert pick_problems(samples, 3) == [(1, "fixed by training"), (2, "broken by training"),
                                         (4, "uses <verify>/<refine>")]
    assert pick_problems(samples, 10) == [(1, "fixed by training"), (2, "broken by training"),
                                          (3, "fixed by training"), (4, "uses <verify>/<refine>")]
    page = side_by_side_markdown(samples, pick_problems(samples, 10))
    assert page.count("### Problem") == 4 and "**ppo** — answer `1`, right" in page
    assert "Problem 1 " not in page  # all right everywhere: nothing to show


def test_side_by_side_refuses_models_scored_on_different_files():
    with pytest.raises(ValueError, match="base and sft .*at problem 2; 1 against 2 .*same held-out file"):
        pick_problems({"base": _records([True]), "sft": _records([True, False])}, 2)
    other = _records([True, False])
    other[1]["question"] = "a different question"  # same count, other problems: refused too
    with pytest.raises(ValueError, match="base and ppo .*at problem 2; 2 against 2"):
        pick_problems({"base": _records([True, True]), "sft": _records([True, False]), "ppo": other}, 2)


def test_the_published_table_does_not_make_the_checkout_dirty(tmp_path, monkeypatch):
    """--publish writes bench/results/learning.json after every stage; only other changes
    mean the run's code differs from its commit."""
    def git(*cmd):
        subprocess.run(["git", "-C", str(tmp_path), *cmd], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    monkeypatch.setattr(reproduce, "REPO", tmp_path)
    monkeypatch.setattr(reproduce, "PUBLISHED", tmp_path / "bench" / "results" / "learning.json")
    reproduce.PUBLISHED.parent.mkdir(parents=True)
    reproduce.PUBLISHED.write_text("{}")
    assert reproduce.git_commit()["dirty"] is False and len(reproduce.git_commit()["commit"]) == 40
    (tmp_path / "code.py").write_text("x = 2\n")
    assert reproduce.git_commit()["dirty"] is True
