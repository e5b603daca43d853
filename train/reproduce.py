"""The paper's table in miniature, in one resumable command (paper §4: Table 1 and the ablations).

    python -m train.reproduce                                  # embedded Qwen default: hours on a CPU
    python -m train.reproduce --preset tiny --out runs/repro_tiny   # a tiny random model: seconds a stage
    python -m train.reproduce --ablations no-sft,sampling,no-merges --publish
    python -m train.reproduce --ppo-args "--iterations 50 --problems-per-iteration 8" \\
        --eval-args="--parallel-rollouts=8"

Stages, in order, each in its own directory OUT/<stage> (train.sft and train.ppo run
in this process, called with the argv each stage records):

1. `heldout` — the held-out problems every model is scored on: the arithmetic
   generator's test split, every level (1-4 unless --levels) in equal shares, written once to
   OUT/heldout/problems.jsonl so each evaluation sees exactly the same problems.
2. `eval_base` — train.eval of the starting model: greedy, and MCTS majority vote at
   1, 4 and 16 rollouts (one search per problem gives every budget).
3. `sft` — phase 1 (train.sft): the prompt-driven search, its correct paths and
   cross-verified merges as in the paper (no reference fallback, no forced answer),
   then `eval_sft`.
4. `ppo` — phase 2 (train.ppo) from OUT/sft/final, then `eval_ppo`.
5. With --ablations: `ppo_no_sft` (RL straight from the base model), `ppo_sampling`
   (train.ppo --rollout-search sampling: the same number of whole answers sampled
   instead of MCTS), `sft_no_merges` + `ppo_no_merges` (SFT on the same search's rows
   without the cross-verified merges); each then evaluated like the others.

A stage writes OUT/<stage>/done.json (settings, result, wall time summed over its runs)
when it finishes. The same command run again skips finished stages, an unfinished
training stage resumes from its own checkpoint, and an unfinished evaluation reads back
the greedy answers it saved before its MCTS part (train/saved_greedy.py). A finished (or
started) stage asked to run with other settings is refused with a message naming the
stage and the settings that differ (train/stages.py). Once a training stage's done.json
is written its checkpoints are deleted (its model is OUT/<stage>/final): for the 0.5B
default each is 7.1 GB and a stage keeps two, so a whole table would otherwise hold ~30 GB
of checkpoints no rerun reads. --keep-checkpoints keeps them (to train a stage further).

Results: OUT/learning.json (per model: greedy, MCTS@k, n, per level; every accuracy
with its 95% Wilson interval; the git commit; each stage's command and wall time; each
RL run's reward and accuracy per iteration; `gains`: each model against the one it
should beat, problem by problem — difference, standard error, McNemar p: train/paired.py),
OUT/learning.md (the table, the gains and each stage's wall time, then a few held-out
problems with the base, SFT and RL greedy answers side by side: train/side_by_side.py)
and, with matplotlib, OUT/learning.png. --publish copies learning.json to bench/results/. All of them are
rewritten after every stage from the stages finished so far (learning.json's `complete`
and `pending` say which are missing), so a run that is stopped, or still going, shows
its table to date.

The `default` preset is sized for the 0.5B default on 2 CPU cores (STAGE_ARGS below),
far smaller than the paper's; bench/RESULTS.md records what each stage cost and why
each size was chosen. Change them with --sft-args / --ppo-args / --eval-args, strings
appended to each stage's argv (write --sft-args=--no-eval with '=' when the string is one flag with no value).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from model import DEFAULT_MODEL, EMBEDDED_MODELS
from model.cli import (HelpFormatter, add_debug_flag, add_device_flag, check_writable_dir, non_negative_int,
                       positive_int, run_cli)
from rftt.data import ALL_LEVELS, generate_arithmetic
from train import eval as eval_cli
from train import ppo, sft
from train.checkpoint import checkpoint_root
from train.learning import markdown_search_leaves, markdown_table, model_figures, rl_curve
from train.learning_plot import plot_learning
from train.paired import compare_evaluations, markdown_gains
from train.presets import add_preset_flag, apply_preset
from train.side_by_side import markdown as side_by_side_markdown
from train.side_by_side import pick_problems, read_greedy
from train.stages import Stage, check_settings, run_stage, stderr_log

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "bench" / "results" / "learning.json"
ABLATIONS = ("no-sft", "sampling", "no-merges")
BUDGETS = "1,4,16"
SIDE_BY_SIDE = 6  # held-out problems whose base, SFT and RL answers learning.md shows
# (model, the model it should beat), compared problem by problem on the greedy answers
# (train/paired.py): the targets, SFT over base and RL over both, and the paper's
# ablation ranking, full RFTT over each ablation.
GAIN_PAIRS = [("sft", "base"), ("ppo", "sft"), ("ppo", "base"),
              ("ppo", "ppo_no_sft"), ("ppo", "ppo_sampling"), ("ppo", "ppo_no_merges")]

# Flags this command fills in from a preset (see add_preset_flag).
PRESETS = {
    "default": dict(model=DEFAULT_MODEL, eval_problems=200, mcts_problems=32),
    "tiny": dict(model="tiny", eval_problems=4, mcts_problems=4),
}
# Each preset's argv for the stages, before --sft-args / --ppo-args / --eval-args.
# default: sized for the 0.5B default on 2 CPU cores (bench/RESULTS.md, "The table in
# miniature" and "More SFT rows"): the phase-1 data as the paper makes it (search paths and
# cross-verified merges, no fallback) from 64 problems searched 3 steps deep (58 rows,
# ~31 min of search; 16 problems gave 12 rows, too few to teach which tag comes); SFT at
# 5e-6 for 2 epochs with 3 warm-up steps (bench/step_size.py: a first AdamW step at 1e-5
# moves the model ~6 nats a token), the functional tokens' new rows at 3e-4
# (train/row_lr.py; at 1e-4 no tag was written, at 1e-3 tags looped everywhere);
# train.ppo's default preset (96-token steps, 320-token direct answers, lr 1e-6: measured
# from the SFT model in bench/RESULTS.md, "RL from the SFT model") with 12 problems an
# iteration on the release's narrow tree (tags the policy gives >= 5 %) for 8 iterations:
# the one RL setting measured above SFT on the held-out problems (64.5 % against 58.5,
# paired +6.0, se 2.9; 4 problems an iteration with every allowed tag for 3 iterations
# lost 6.5 points; "Twelve problems an iteration" and "Eight iterations"), at micro-batches
# of 2 (its update peaked at 21.1 GB resident, 4 reached 23.3 GB: a 24 GB machine); every
# evaluation searches as train.ppo's rollouts do (depth 4, 96-token steps, 320-token direct
# answers: MCTS@16 on 8 problems took 7.5 min for the SFT model, so ~25 min on the 32) and
# decodes greedy answers up to 512 tokens (the SFT rows average 358 tokens, 42 of 58 over
# 256; of the base model's answers to 40 held-out problems, 15 were cut at 256 and none at
# 512, with the same 18 right).
# tiny: a random model finds no correct path, so the reference fallback gives SFT rows;
# every size is the smallest that still runs each part (tests: seconds a stage).
_PPO = ppo.PRESETS["default"]
_ROLLOUT_SEARCH = ["--depth", str(_PPO["depth"]), "--max-step-tokens", str(_PPO["max_step_tokens"]),
                   "--direct-answer-tokens", str(_PPO["direct_answer_tokens"])]  # the search train.ppo trains on
STAGE_ARGS = {
    "default": dict(sft=["--preset", "default", "--no-reference-fallback", "--no-force-answer",
                         "--train-problems", "64", "--depth", "3", "--epochs", "2", "--lr", "5e-6",
                         "--functional-token-lr", "3e-4", "--warmup-steps", "3", "--checkpoint-every", "6"],
                    ppo=["--preset", "default", "--iterations", "8", "--problems-per-iteration", "12",
                         "--min-function-prob", "0.05", "--micro-batch-size", "2"],
                    eval=[*_ROLLOUT_SEARCH, "--max-new-tokens", "512"]),
    "tiny": dict(sft=["--preset", "tiny", "--reference-fallback", "--no-force-answer", "--train-problems", "4",
                      "--epochs", "1", "--batch-size", "4", "--micro-batch-size", "4"],
                 ppo=["--preset", "tiny", "--iterations", "2", "--problems-per-iteration", "1", "--rollouts", "2"],
                 eval=["--depth", "2", "--max-step-tokens", "6", "--max-new-tokens", "16"]),
}


def ablation_list(text: str) -> list[str]:
    """'no-sft,sampling' -> ['no-sft', 'sampling'] (each one of ABLATIONS); '' -> []."""
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in ABLATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown ablation(s) {', '.join(unknown)}; "
                                         f"choose from {', '.join(ABLATIONS)}")
    return [a for a in ABLATIONS if a in names]


def level_list(text: str) -> list[int]:
    try:
        levels = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated levels, got {text!r}") from None
    if not levels or any(lv not in ALL_LEVELS for lv in levels):
        raise argparse.ArgumentTypeError(f"levels must be a non-empty subset of {ALL_LEVELS}, got {text!r}")
    return levels


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter, epilog=__doc__)
    preset = add_preset_flag(p, PRESETS)
    p.add_argument("--model", help=f"starting model: an embedded name ({', '.join(EMBEDDED_MODELS)}), a Hugging "
                   f"Face directory, or 'tiny' (random, written once to OUT/base_model) {preset('model')}")
    p.add_argument("--out", default="runs/reproduce", help="directory of every stage, learning.json and the plot")
    p.add_argument("--ablations", type=ablation_list, default=[],
                   help=f"comma-separated ablations to run too: {', '.join(ABLATIONS)} (default: none)")
    p.add_argument("--eval-problems", type=positive_int,
                   help=f"held-out problems every model is scored on {preset('eval_problems')}")
    p.add_argument("--mcts-problems", type=positive_int,
                   help=f"how many of them MCTS@1/4/16 also scores, spread evenly over the levels (a vote "
                        f"costs ~16 greedy answers) {preset('mcts_problems')}")
    p.add_argument("--levels", type=level_list, default=",".join(map(str, ALL_LEVELS)),
                   help="generator levels of the held-out problems")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the held-out problems and of every stage (passed as --seed)")
    p.add_argument("--sft-args", default="",
                   help="extra train.sft flags, one string, appended to the SFT stages' argv (default: none)")
    p.add_argument("--ppo-args", default="",
                   help="extra train.ppo flags, one string, appended to every PPO stage's argv (default: none)")
    p.add_argument("--eval-args", default="",
                   help="extra train.eval flags, one string, appended to every evaluation's argv (default: none)")
    p.add_argument("--stop-after-stage", default=None,
                   help="exit (code 3) after this stage's done.json, as if killed (to test resuming)")
    p.add_argument("--publish", action="store_true", help=f"also copy learning.json to {PUBLISHED.relative_to(REPO)}")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep a finished training stage's checkpoints (default: deleted once its done.json is "
                        "written; its model stays in OUT/<stage>/final)")
    add_device_flag(p)
    add_debug_flag(p)
    args = p.parse_args(argv)
    apply_preset(args, PRESETS)
    return args


# --------------------------------------------------------------------------- stages


def write_held_out(path: Path, n: int, seed: int, levels: list[int]) -> dict:
    """The generator's test-split problems as a MATH-style JSONL (level and type kept),
    which train.eval reads in file order: every model sees the same problems. Each level
    gets an equal share (the first ones one more when n does not divide), so every
    per-level figure rests on about n / levels problems rather than on chance."""
    shares = [n // len(levels) + (i < n % len(levels)) for i in range(len(levels))]
    problems = [p for level, share in zip(levels, shares) if share
                for p in generate_arithmetic(share, "test", seed=seed, levels=(level,))]
    with path.open("w") as f:
        for p in problems:
            f.write(json.dumps({"problem": p.question, "solution": p.solution, "answer": p.answer, "level": p.level,
                                "type": p.type, "unique_id": p.source_id}) + "\n")
    counts: dict[str, int] = {}
    for p in problems:
        counts[str(p.level)] = counts.get(str(p.level), 0) + 1
    return {"problems": len(problems), "per_level": dict(sorted(counts.items())), "file": str(path)}


def write_tiny_model(directory: Path, seed: int, device: str) -> dict:
    """`--model tiny` as a directory: train.eval loads directories and embedded names only."""
    import torch

    from model import save_pretrained
    from train.model_io import load_base_model

    model, tok = load_base_model("tiny", torch.device(device), seed)
    save_pretrained(model, tok, directory)
    return {"model": str(directory)}


def _command(module: str, argv: list[str]) -> str:
    return f"python -m {module} {shlex.join(argv)}"


def build_stages(args) -> list[tuple[str, Stage]]:
    """(module the stage runs, Stage) in running order."""
    out = Path(args.out)
    extra = STAGE_ARGS[args.preset]
    sft_extra = extra["sft"] + shlex.split(args.sft_args)
    ppo_extra = extra["ppo"] + shlex.split(args.ppo_args)
    eval_extra = extra["eval"] + shlex.split(args.eval_args)
    common = ["--seed", str(args.seed), "--device", args.device]
    stages: list[tuple[str, Stage]] = []

    base = args.model
    if args.model == "tiny":
        base = str(out / "base_model" / "model")
        stages.append(("", Stage("base_model", out / "base_model", {"model": "tiny", "seed": args.seed},
                                 lambda: write_tiny_model(Path(base), args.seed, args.device))))
    held_out = out / "heldout" / "problems.jsonl"
    stages.append(("", Stage("heldout", out / "heldout",
                             {"problems": args.eval_problems, "seed": args.seed, "levels": args.levels},
                             lambda: write_held_out(held_out, args.eval_problems, args.seed, args.levels))))

    def evaluation(model_name: str, model_path: str) -> None:
        directory = out / f"eval_{model_name}"
        argv = ["--model", model_path, "--data", str(held_out), "--limit", str(args.eval_problems),
                "--rollouts", BUDGETS,
                "--mcts-limit", str(min(args.mcts_problems, args.eval_problems)), "--out", str(directory), *common, *eval_extra]
        stages.append(("train.eval", Stage(f"eval_{model_name}", directory, {"argv": argv},
                                           lambda: eval_cli.main(argv))))

    def sft_stage(name: str, data: list[str]) -> str:
        directory = out / name
        argv = ["--model", base, "--out", str(directory), "--no-eval", *data, *common, *sft_extra]
        stages.append(("train.sft", Stage(name, directory, {"argv": argv}, lambda: sft.main(argv))))
        return str(directory / "final")

    def ppo_stage(name: str, model_path: str, flags: list[str] = ()) -> None:
        directory = out / name
        argv = ["--model", model_path, "--out", str(directory), "--data", "arith", *flags, *common, *ppo_extra]
        stages.append(("train.ppo", Stage(name, directory, {"argv": argv}, lambda: ppo.main(argv))))
        evaluation(name, str(directory / "final"))

    evaluation("base", base)
    sft_model = sft_stage("sft", ["--data", "arith"])
    evaluation("sft", sft_model)
    ppo_stage("ppo", sft_model)
    if "no-sft" in args.ablations:
        ppo_stage("ppo_no_sft", base)
    if "sampling" in args.ablations:
        ppo_stage("ppo_sampling", sft_model, ["--rollout-search", "sampling"])
    if "no-merges" in args.ablations:
        # The same search's rows (OUT/sft/sft_data.jsonl) without the merges: only the data differs.
        ppo_stage("ppo_no_merges", sft_stage("sft_no_merges", ["--data", str(out / "sft" / "sft_data.jsonl"),
                                                               "--no-merges"]))
    return stages


def drop_checkpoints(stage: Stage) -> None:
    """Deletes a finished training stage's checkpoints (a rerun skips the stage, so none
    is ever read again); also those a run killed right after done.json left behind."""
    root = checkpoint_root(stage.directory)
    if root.is_dir():
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        shutil.rmtree(root)
        stderr_log(f"[reproduce] {stage.name}: deleted its checkpoints ({size / 1e9:.1f} GB; the model is in "
                   f"{stage.directory / 'final'}; --keep-checkpoints keeps them)")


# -------------------------------------------------------------------------- results


def git_commit() -> dict:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True, check=True).stdout

    try:
        # --publish writes bench/results/learning.json after every stage: that is the output,
        # not a change to the code the run used.
        changes = git("status", "--porcelain", "--", ".", f":!{PUBLISHED.relative_to(REPO)}")
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(changes.strip())}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def learning_results(args, argv: list[str], stages: list[tuple[str, Stage]], records: dict[str, dict]) -> dict:
    """learning.json's content from the stages finished so far (`records`); `pending`
    names the others, so a table read mid-run says what it still lacks."""
    done = [(module, stage) for module, stage in stages if stage.name in records]
    models = {name[len("eval_"):]: model_figures(records[name]["result"], args.levels)
              for name in records if name.startswith("eval_")}
    rl = {stage.name: rl_curve(stage.directory / "metrics.jsonl") for module, stage in done if module == "train.ppo"}
    out = Path(args.out)
    gains = [{"model": after, "over": before, **compare_evaluations(out / f"eval_{before}", out / f"eval_{after}")}
             for after, before in GAIN_PAIRS if after in models and before in models]
    return {
        **git_commit(),
        "complete": len(done) == len(stages),
        "pending": [stage.name for _, stage in stages if stage.name not in records],
        "command": _command("train.reproduce", argv),
        "preset": args.preset, "model": args.model, "ablations": args.ablations,
        "held_out": {"seed": args.seed, "levels": args.levels, **records.get("heldout", {}).get("result", {})},
        "models": models,
        "gains": gains,
        "rl": rl,
        "stages": {stage.name: {"command": _command(module, stage.settings["argv"]) if module else None,
                                "settings": stage.settings, "wall_s": records[stage.name]["wall_s"],
                                "resumed": records[stage.name]["resumed"],
                                # a done.json from before the stage clock: a resumed stage, its earlier runs untimed
                                "runs": records[stage.name].get("runs", 1 + records[stage.name]["resumed"]),
                                "untimed_runs": records[stage.name].get("untimed_runs",
                                                                        int(records[stage.name]["resumed"])),
                                "finished_at": records[stage.name]["finished_at"]}
                   for module, stage in done},
    }


def stage_times(stages: dict[str, dict]) -> str:
    """The finished stages' wall times as a markdown table. A stage killed and resumed sums
    its runs' times (train/stage_clock.py); a run from before the stage clock is not counted."""
    lines = ["| stage | wall time, min | finished at (UTC) | |", "|---|---|---|---|"]
    for name, s in stages.items():
        note = "" if s["runs"] == 1 else f"{s['runs']} runs, their times summed"
        if s["untimed_runs"]:
            note += f"; {s['untimed_runs']} from before the stage clock not counted"
        lines.append(f"| {name} | {s['wall_s'] / 60:.1f} | {s['finished_at']} | {note} |")
    return "\n".join(lines)


def write_results(args, argv: list[str], stages: list[tuple[str, Stage]], records: dict[str, dict]) -> dict:
    """OUT/learning.json, learning.md and learning.png from the stages finished so far
    (and with --publish bench/results/learning.json): rewritten after every stage, so a
    run stopped or still going shows its table to date."""
    out = Path(args.out)
    learning = learning_results(args, argv, stages, records)
    (out / "learning.json").write_text(json.dumps(learning, indent=2))
    table = markdown_table(learning["models"])
    if learning["pending"]:
        table += f"\n\nNot finished yet: {', '.join(learning['pending'])}."
    if learning["gains"]:
        table += ("\n\n## Paired gains (greedy, the same problems)\n\nEach model's accuracy minus the other's, "
                  "problem by problem (train/paired.py): standard error, normal 95% interval and the exact "
                  "McNemar p of the discordant problems.\n\n" + markdown_gains(learning["gains"]))
    leaves = markdown_search_leaves(learning["models"])
    if leaves:
        table += "\n\n## What the searches found (MCTS, the largest budget)\n\n" + leaves
    core = {name: read_greedy(out / f"eval_{name}") for name in ("base", "sft", "ppo") if name in learning["models"]}
    answers = side_by_side_markdown(core, pick_problems(core, SIDE_BY_SIDE)) if core else ""
    (out / "learning.md").write_text(f"{table}\n\n## Stages\n\n{stage_times(learning['stages'])}\n\n"
                                     f"## What the models write (greedy)\n\n{answers}")
    if learning["models"] and not plot_learning(learning["models"], learning["rl"], out / "learning.png"):
        stderr_log("[reproduce] matplotlib is not installed: no learning.png (pip install matplotlib)")
    if args.publish:
        PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "learning.json", PUBLISHED)
    return learning


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    out = check_writable_dir(args.out)
    stages = build_stages(args)
    names = [s.name for _, s in stages]
    if args.stop_after_stage is not None and args.stop_after_stage not in names:
        raise ValueError(f"--stop-after-stage {args.stop_after_stage!r}: this run's stages are {', '.join(names)}")
    for _, stage in stages:  # refuse changed settings before hours of work, not after
        check_settings(stage)

    records = {}
    for module, stage in stages:
        records[stage.name] = run_stage(stage)
        if module in ("train.sft", "train.ppo") and not args.keep_checkpoints:
            drop_checkpoints(stage)  # after done.json: a kill before it leaves them to resume from
        learning = write_results(args, argv, stages, records)
        if stage.name == args.stop_after_stage and learning["pending"]:
            stderr_log(f"[reproduce] stopping after {stage.name} (--stop-after-stage); rerun the command to go on")
            raise SystemExit(3)

    if args.publish:
        stderr_log(f"[reproduce] published {PUBLISHED}")
    stderr_log(f"[reproduce] wrote {out / 'learning.json'}")
    print(markdown_table(learning["models"]))
    return learning


if __name__ == "__main__":
    run_cli(main)
