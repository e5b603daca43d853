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
