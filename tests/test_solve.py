"""python -m train.solve: one question, greedy or searched, answered as train.eval would."""

import json

import pytest

from tests.tiny_models import write_checkpoint
from train.solve import main as solve_main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("solve") / "ckpt"
    write_checkpoint(path, "qwen3", seed=9)
    return path


@pytest.mark.parametrize("extra", [[], ["--rollouts", "2", "--depth", "2"]])
def test_solve_cli_json(tiny, capsys, extra):
    solve_main(["--question", "What is 2 + 3?", "--model", str(tiny), "--max-new-tokens", "8", "--json"] + extra)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    out = json.loads(last)
    assert set(out) >= {"text", "answer"} and isinstance(out["text"], str)


def test_solve_search_flags_reach_the_search(tiny, monkeypatch, capsys):
    """--direct-answer-tokens and --min-function-prob reach the search, as in train.eval."""
    import train.solve as solve

    seen = {}
    real = solve.start_search

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(solve, "start_search", spy)
    solve_main(["--question", "What is 2 + 3?", "--model", str(tiny), "--max-new-tokens", "4",
                "--direct-answer-tokens", "12", "--rollouts", "1", "--depth", "1", "--min-function-prob", "0.05",
                "--json"])
    assert seen["direct_answer_tokens"] == 12 and seen["max_step_tokens"] == 4
    assert seen["min_function_prob"] == 0.05


def test_solve_direct_answer_cap_checked_against_the_context(tiny):
    from model.context import ContextLengthError

    with pytest.raises(ContextLengthError, match="--direct-answer-tokens 100000000"):
        solve_main(["--question", "What is 2 + 3?", "--model", str(tiny), "--max-new-tokens", "4",
                    "--direct-answer-tokens", "100000000", "--rollouts", "1", "--depth", "1"])
