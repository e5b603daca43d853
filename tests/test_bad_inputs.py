"""What a careless user can hand the tools, and the one clear error each must get: it
names the file and line, the field or the flag, it comes before any model is loaded or
searched, and no run directory loses what it had."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import WeightsError, load_model
from model.cli import check_writable_dir, run_cli
from model.context import ContextLengthError
from rftt.data import MAX_LINE_BYTES, DataError, file_format, generate_arithmetic, load_problems
from rftt.sft_data import read_sft_jsonl, write_jsonl
from rftt.solution_steps import reference_rows
from search.chat import main as chat_main
from tests.tiny_models import write_checkpoint
from train import eval as eval_cli
from train import ppo, sft
from train.checkpoint import CheckpointError, find_latest, load_checkpoint, save_checkpoint
from train.distributed import init_distributed
from train.prompt_lengths import check_sequence_lengths
from train.sequences import Sequence
from train.solve import main as solve_main

REPO = Path(__file__).resolve().parents[1]
NO_MODEL = "/nonexistent/model"  # loading it would fail: reaching it means the check came too late
TOY_REWARD = "tests.toy_rewards:lowercase_fraction"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny checkpoint (context 8,192, about one token a character)."""
    path = tmp_path_factory.mktemp("bad") / "tiny"
    write_checkpoint(path, "qwen2", seed=2)
    return path


@pytest.fixture
def random_bytes(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4000)))
    return path


def _gsm8k(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": "It is 2.\n#### 2"}) + "\n" for q in questions))
    return path


# ---------------------------------------------------------------- 1. not a text file


def test_random_bytes_name_the_file_and_line(random_bytes):
    for read in (load_problems, file_format, read_sft_jsonl):
        with pytest.raises(DataError, match=rf"{random_bytes}, line \d+, field '\(row\)': not UTF-8 text"):
            read(str(random_bytes))


def test_eval_rejects_random_bytes_before_loading_the_model(random_bytes, tmp_path):
    with pytest.raises(DataError, match=str(random_bytes)):
        eval_cli.main(["--model", NO_MODEL, "--data", str(random_bytes), "--out", str(tmp_path / "out")])


def test_sft_rejects_random_bytes_before_loading_the_model(random_bytes, tmp_path):
    with pytest.raises(DataError, match=str(random_bytes)):
        sft.main(["--model", NO_MODEL, "--data", str(random_bytes), "--out", str(tmp_path / "out")])


# ---------------------------------------------------------------- 2. too long for the model


def test_a_line_past_the_size_cap_is_refused_before_parsing(tmp_path):
    path = _gsm8k(tmp_path / "huge.jsonl", ["What is 1 + 1?", "x" * MAX_LINE_BYTES])
    with pytest.raises(DataError, match=r"huge\.jsonl, line 2, field '\(row\)': longer than"):
        load_problems(str(path))


def test_eval_checks_every_prompt_against_the_context_before_work(tiny_dir, tmp_path):
    path = _gsm8k(tmp_path / "long.jsonl", ["What is 1 + 1?", "What is 2 + 2? " * 600])  # ~9,000 tokens
    out = tmp_path / "out"
    with pytest.raises(ContextLengthError, match=rf"{path}, line 2, field 'question'.*context of 8,192"):
        eval_cli.main(["--model", str(tiny_dir), "--data", str(path), "--limit", "2", "--rollouts", "1", "--out", str(out)])
    assert not (out / "greedy_samples.jsonl").exists()  # nothing was generated
    # The caps count too: a short prompt with room for 8,192 new tokens does not fit.
    with pytest.raises(ContextLengthError, match=r"line 1, field 'question'.*--max-new-tokens 8192"):
        eval_cli.main(["--model", str(tiny_dir), "--data", str(path), "--limit", "1", "--rollouts", "",
                       "--max-new-tokens", "8192", "--out", str(out)])
    with pytest.raises(ContextLengthError, match=r"line 1, field 'question'.*--depth 100 x \(--max-step-tokens 96"):
        eval_cli.main(["--model", str(tiny_dir), "--data", str(path), "--limit", "1", "--rollouts", "1",
                       "--depth", "100", "--out", str(out)])


def test_sft_and_ppo_check_their_problems_prompts(tiny_dir, tmp_path):
    path = _gsm8k(tmp_path / "long.jsonl", ["What is 1 + 1?"] * 3 + ["What is 2 + 2? " * 600])
    with pytest.raises(ContextLengthError, match=rf"{path}, line 4, field 'question'"):
        sft.main(["--preset", "tiny", "--model", str(tiny_dir), "--data", str(path), "--eval-data", "arith",
                  "--out", str(tmp_path / "sft")])
    with pytest.raises(ContextLengthError, match=rf"{path}, line 4, field 'question'"):
        ppo.main(["--preset", "tiny", "--model", str(tiny_dir), "--data", str(path), "--out", str(tmp_path / "ppo")])
    assert not list((tmp_path / "ppo").glob("checkpoints/*"))


@pytest.mark.parametrize("main, flag", [(solve_main, "--question"), (chat_main, "the question")])
def test_a_question_past_the_context_names_the_flag(tiny_dir, main, flag):
    question = "What is 2 + 2? " * 600
    argv = ["--question", question] if flag == "--question" else [question]
    with pytest.raises(ContextLengthError, match=rf"^{flag}.*context of 8,192"):
        main(["--model", str(tiny_dir), *argv])


# ---------------------------------------------------------------- 3. SFT rows train.sft wrote


def test_sft_rows_are_told_apart_from_gsm8k_and_trained_on(tmp_path):
    problems = generate_arithmetic(4, "train", seed=9)
    rows_path = tmp_path / "sft_data.jsonl"
    write_jsonl(str(rows_path), reference_rows(problems))
    assert file_format(str(rows_path)) == "sft"
    loaded = load_problems(str(rows_path))
    assert [(p.question, p.answer) for p in loaded] == [(p.question, p.answer) for p in problems]
    assert loaded[2].origin == f"{rows_path}, line 3"
    summary = sft.main(["--preset", "tiny", "--data", str(rows_path), "--epochs", "1", "--batch-size", "2",
                        "--no-eval", "--out", str(tmp_path / "run")])
    assert summary["sft_rows"] == 4 and summary["steps"] == 2 and summary["kinds"] == {"reference": 4}
    # Every row is trained on, so the held-out problems come from the generator's test split.
    _, held_out = sft.split_problems(sft.parse_args(["--preset", "tiny", "--data", str(rows_path)]))
    assert held_out == generate_arithmetic(8, "test", seed=0)


def test_a_file_too_small_to_hold_out_names_the_flags(tmp_path):
    path = _gsm8k(tmp_path / "three.jsonl", ["What is 1 + 1?"] * 3)
    with pytest.raises(ValueError, match=r"--data .*three\.jsonl: 3 problems, too few to hold out --eval-problems 8"):
        sft.split_problems(sft.parse_args(["--preset", "tiny", "--data", str(path)]))


def test_an_sft_row_too_long_for_the_context_is_named(tiny_dir):
    config = load_model(tiny_dir)[0].config
    rows = [Sequence([1] * 20, prompt_len=10), Sequence([1] * 9000, prompt_len=10)]
    with pytest.raises(ContextLengthError, match=r"^rows\.jsonl, row 2: a prompt of 10 tokens \+ up to 8,990"):
        check_sequence_lengths(rows, config, "rows.jsonl")


# ---------------------------------------------------------------- 4. a truncated safetensors file


def test_a_truncated_safetensors_file_is_named(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    with pytest.raises(WeightsError, match=rf"{weights}: not a readable safetensors file"):
        load_model(broken)


# ---------------------------------------------------------------- 5. a corrupt newest checkpoint


def _small_run(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    info = init_distributed("cpu")
    for step in (1, 2):
        with torch.no_grad():
            model.weight.fill_(float(step))
        save_checkpoint(tmp_path / "run", step, model, opt, {"marker": step}, info)
    return model, opt, info


@pytest.mark.parametrize("victim", ["__0_0.distcp", "trainer_state.pt", ".metadata"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys, victim):
    model, opt, info = _small_run(tmp_path)
    newest = tmp_path / "run" / "checkpoints" / "step_00000002"
    damaged = newest / victim
    cut = damaged.read_bytes()[:damaged.stat().st_size // 2]
    damaged.write_bytes(cut)
    latest = find_latest(tmp_path / "run")
    assert latest.name == "step_00000001"
    assert f"checkpoint {newest} is corrupt" in capsys.readouterr().err
    state = load_checkpoint(latest, model, opt, info)
    assert state["marker"] == 1 and torch.equal(model.weight, torch.ones(3, 4))
    # Saving step 2 again moves the damaged one aside; it is never deleted.
    save_checkpoint(tmp_path / "run", 2, model, opt, {"marker": 2}, info)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["step_00000001", "step_00000002", "step_00000002.corrupt"]
    assert (newest.with_name("step_00000002.corrupt") / victim).read_bytes() == cut
    assert find_latest(tmp_path / "run") == newest


def test_a_run_whose_every_checkpoint_is_corrupt_does_not_start_over(tmp_path):
    _small_run(tmp_path)
    for step in (1, 2):
        (tmp_path / "run" / "checkpoints" / f"step_0000000{step}" / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint to resume from: .*step_00000002 .*step_00000001"):
        find_latest(tmp_path / "run")
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 2  # both still there


def test_a_checkpoint_of_another_model_names_its_directory(tmp_path):
    _small_run(tmp_path)
    other = torch.nn.Linear(5, 3)
    with pytest.raises(CheckpointError, match=r"step_00000002: cannot load it into this model"):
        load_checkpoint(find_latest(tmp_path / "run"), other, torch.optim.AdamW(other.parameters()),
                        init_distributed("cpu"))


def test_ppo_resumes_past_a_corrupt_checkpoint(tiny_dir, tmp_path, capsys):
    argv = ["--model", str(tiny_dir), "--out", str(tmp_path / "run"), "--iterations", "2", "--problems-per-iteration",
            "1", "--rollouts", "1", "--depth", "1", "--max-step-tokens", "4", "--reward-fn", TOY_REWARD]
    ppo.main(argv)  # checkpoints at iterations 1 and 2
    step2 = tmp_path / "run" / "checkpoints" / "step_00000002"
    shard = step2 / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    capsys.readouterr()
    ppo.main(argv)
    err = capsys.readouterr().err
    assert f"checkpoint {step2} is corrupt" in err and "step_00000001 (iteration 1 of 2)" in err
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.corrupt" / "__0_0.distcp").stat().st_size == 100
    assert [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_sft_resumes_past_a_corrupt_checkpoint(tmp_path, capsys):
    argv = ["--preset", "tiny", "--train-problems", "4", "--epochs", "2", "--batch-size", "2", "--checkpoint-every", "2",
            "--no-eval", "--out", str(tmp_path / "run")]
    sft.main(argv)  # 4 steps: checkpoints at 2 and 4
    older, newest = (tmp_path / "run" / "checkpoints" / f"step_0000000{s}" for s in (2, 4))
    (newest / "trainer_state.pt").write_bytes(b"")
    capsys.readouterr()
    sft.main(argv)
    err = capsys.readouterr().err
    assert f"checkpoint {newest} is corrupt" in err and f"resuming from {older} (step 2 of 4)" in err
    assert (newest.with_name("step_00000004.corrupt") / "trainer_state.pt").read_bytes() == b""
    assert (newest / "trainer_state.pt").stat().st_size > 0


# ---------------------------------------------------------------- 6. numeric flags


@pytest.mark.parametrize("main, argv, flag", [
    (eval_cli.main, ["--temperature", "-1"], "--temperature"),
    (eval_cli.main, ["--depth", "0"], "--depth"),
    (eval_cli.main, ["--max-step-tokens", "0"], "--max-step-tokens"),
    (eval_cli.main, ["--max-new-tokens", "0"], "--max-new-tokens"),
    (eval_cli.main, ["--limit", "-3"], "--limit"),
    (eval_cli.main, ["--rollouts", "1,0"], "--rollouts"),
    (eval_cli.main, ["--rollouts", "1,x"], "--rollouts"),
    (eval_cli.main, ["--temperature", "nan"], "--temperature"),
    (sft.parse_args, ["--lr", "0"], "--lr"),
    (sft.parse_args, ["--warmup-steps", "-1"], "--warmup-steps"),
    (sft.parse_args, ["--depth", "0"], "--depth"),
    (sft.parse_args, ["--weight-decay", "-0.1"], "--weight-decay"),
    (sft.parse_args, ["--epochs", "two"], "--epochs"),
    (ppo.parse_args, ["--temperature", "0"], "--temperature"),
    (ppo.parse_args, ["--lam", "1.5"], "--lam"),
    (ppo.parse_args, ["--beta", "-0.01"], "--beta"),
    (ppo.parse_args, ["--clip-eps", "0"], "--clip-eps"),
    (ppo.parse_args, ["--max-step-tokens", "0"], "--max-step-tokens"),
    (solve_main, ["--question", "q", "--rollouts", "-1"], "--rollouts"),
    (solve_main, ["--question", "q", "--depth", "0"], "--depth"),
    (solve_main, ["--question", "q", "--temperature", "-1"], "--temperature"),
    (chat_main, ["q", "--max-new-tokens", "0"], "--max-new-tokens"),
])
def test_bad_numbers_name_the_flag_before_any_work(capsys, main, argv, flag):
    with pytest.raises(SystemExit) as exit_:
        main(["--model", NO_MODEL, *argv])
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


# ---------------------------------------------------------------- 7. an output that cannot be written


def test_an_unwritable_out_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = str(blocker / "run")
    with pytest.raises(OSError, match=rf"--out {out}: cannot write there"):
        check_writable_dir(out)
    for main in (eval_cli.main, sft.main, ppo.main):
        with pytest.raises(OSError, match="--out"):
            main(["--model", NO_MODEL, "--out", out])


def test_eval_keeps_the_greedy_results_when_the_search_fails(tiny_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("search failed")
    monkeypatch.setattr(eval_cli, "mcts_votes", broken)
    with pytest.raises(RuntimeError):
        eval_cli.main(["--model", str(tiny_dir), "--limit", "2", "--rollouts", "1", "--max-new-tokens", "4",
                       "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["problems"] == 2 and 0.0 <= summary["greedy"]["accuracy"] <= 1.0
    assert len((tmp_path / "greedy_samples.jsonl").read_text().splitlines()) == 2


def test_sft_keeps_its_rows_when_writing_the_stats_fails(tmp_path):
    out = tmp_path / "run"
    (out / "sft_data_stats.json").mkdir(parents=True)  # a file cannot be written there
    with pytest.raises(IsADirectoryError):
        sft.main(["--preset", "tiny", "--train-problems", "3", "--no-eval", "--out", str(out)])
    assert len(read_sft_jsonl(str(out / "sft_data.jsonl"))) == 3


# ---------------------------------------------------------------- 10. one line, not a traceback


def _fails(argv):
    raise DataError("data.jsonl", 3, "question", "missing")


def test_run_cli_prints_the_message_alone(capsys, monkeypatch):
    monkeypatch.delenv("RFTT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        run_cli(_fails, [])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err
    assert err.startswith("error: data.jsonl, line 3, field 'question': missing\n")
    with pytest.raises(DataError):
        run_cli(_fails, ["--debug"])
    monkeypatch.setenv("RFTT_DEBUG", "1")
    with pytest.raises(DataError):
        run_cli(_fails, [])


def test_an_entry_point_prints_one_line_and_exits_non_zero(random_bytes):
    env = {k: v for k, v in os.environ.items() if k != "RFTT_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "train.eval", "--model", NO_MODEL, "--data", str(random_bytes),
                           "--out", str(random_bytes.parent / "out")], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: {random_bytes}, line " in proc.stderr and len(proc.stderr.splitlines()) <= 3
