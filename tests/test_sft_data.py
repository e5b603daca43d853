"""SFT rows: build_sft_data end to end on a tiny model, and the JSONL reader's checks."""

import json

import pytest

from model import load_model
from rftt.data import DataError, Problem
from rftt.prompt_search import PromptDrivenEnv
from rftt.sft_data import build_sft_data, read_sft_jsonl, validate_row, write_jsonl
from rftt.sft_prompts import INSTRUCTIONS, VERIFY_INSTRUCTION
from rftt.steps import RL_TRANSITIONS, ROOT, parse_steps
from tests.tiny_models import write_checkpoint

ROW = {
    "question": "What is 2 + 3?", "answer": "5",
    "response": "<next_step>\n2 + 3 = 5. So the answer is \\boxed{5}.\n</next_step>\n"
                "<output>\nThe answer is \\boxed{5}.\n</output>\n",
    "kind": "correct",
    "source": {"source_id": "p0", "path": ["next_step"], "wrong_path": None, "leaf_reward": 1.0},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    write_checkpoint(path, "qwen3", seed=4)
    return load_model(path)


PROBLEMS = [Problem("What is 2 + 3?", "5", source_id="p0"), Problem("What is 3 + 4?", "7", source_id="p1")]


def test_build_sft_data_end_to_end_with_a_scripted_model(tiny, monkeypatch, tmp_path):
    """The tiny model really runs (prompts, batches, pool); only the text it is read as
    is scripted, from its prompt: each problem's direct answers alternate wrong, right."""
    model, tok = tiny
    golds = {p.question: p.answer for p in PROBLEMS}
    answered: dict[str, int] = {}

    def scripted(self, branch, start):
        prompt = self.tok.decode(self.engine.text_tokens(branch)[:len(self.engine.text_tokens(branch)) - len(branch.generated)])
        if VERIFY_INSTRUCTION in prompt:
            return "Attempt A added wrong.", "eos"
        question = next(q for q in golds if q in prompt)
        if INSTRUCTIONS["direct_answer"] in prompt:
            answered[question] = answered.get(question, 0) + 1
            right = answered[question] % 2 == 0
            value = golds[question] if right else "0"
            return f"Adding gives {value}. So the answer is \\boxed{{{value}}}.", "eos"
        return "Some <analysis>words</analysis>.", "length"

    monkeypatch.setattr(PromptDrivenEnv, "_new_text", scripted)
    rows, stats = build_sft_data(model, tok, PROBLEMS, rollouts=4, max_depth=3, max_step_tokens=1, progress=False)
    assert stats["problems"] == 2 and stats["leaves"] == 8
    assert stats["correct_leaves"] == 4 and stats["problems_with_correct_path"] == 2
    assert (stats["rows_correct"], stats["rows_verified"], stats["dropped_invalid"]) == (2, 2, 0)
    assert sorted((r["source"]["source_id"], r["kind"]) for r in rows) == [
        ("p0", "correct"), ("p0", "verified"), ("p1", "correct"), ("p1", "verified")]
    for row in rows:
        validate_row(row)
        json.dumps(row)
        parsed = parse_steps(row["response"])
        functions = [s.function for s in parsed.steps]
        for prev, nxt in zip([ROOT] + functions, functions):
            assert nxt in RL_TRANSITIONS[prev]
        assert row["response"].endswith(f"<output>\nThe answer is \\boxed{{{row['answer']}}}.\n</output>\n")
        assert "<|im_end|>" not in row["response"]
        if row["kind"] == "verified":
            assert "<verify>\nAttempt A added wrong.\n</verify>\n<refine>\n" in row["response"]
            assert row["source"]["wrong_path"] and row["source"]["wrong_path"][-1] == "direct_answer"
        else:
            assert row["source"]["wrong_path"] is None and row["source"]["leaf_reward"] == 1.0
    path = tmp_path / "sft.jsonl"
    write_jsonl(str(path), rows)
    assert read_sft_jsonl(str(path)) == rows
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]  # no temporary file left


def test_build_sft_data_on_the_raw_tiny_model(tiny):
    model, tok = tiny
    rows, stats = build_sft_data(model, tok, PROBLEMS, rollouts=2, max_depth=2, max_step_tokens=4, progress=False)
    assert stats["problems"] == 2 and stats["leaves"] == 4 and stats["steps_generated"] > 0
    for row in rows:  # a random model is rarely right; whatever it made must be valid
        validate_row(row)


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("bad, field", [
    ({k: v for k, v in ROW.items() if k != "question"}, "question"),
    (dict(ROW, answer=5), "answer"),
    (dict(ROW, kind="other"), "kind"),
    (dict(ROW, source=dict(ROW["source"], path="next_step")), "source.path"),
    (dict(ROW, source=dict(ROW["source"], leaf_reward="high")), "source.leaf_reward"),
    (dict(ROW, response="2 + 3 = 5"), "response"),  # not steps
    (dict(ROW, response="<next_step>\nSo the answer is \\boxed{5}.\n</next_step>\n"), "response"),  # no output
    (dict(ROW, response="<clarify>\n5\n</clarify>\n<output>\n\\boxed{5}\n</output>\n"), "response"),  # transition
    (dict(ROW, answer="6"), "response"),  # boxed answer is not the gold
])
def test_read_sft_jsonl_names_file_line_and_field(tmp_path, bad, field):
    path = _write(tmp_path / "data.jsonl", [ROW, bad])
    with pytest.raises(DataError) as e:
        read_sft_jsonl(path)
    assert (e.value.path, e.value.line, e.value.field) == (path, 2, field)
    assert f"{path}, line 2, field '{field}'" in str(e.value)


def test_read_sft_jsonl_bad_json_and_good_file(tmp_path):
    path = _write(tmp_path / "data.jsonl", [ROW, "", "{not json"])
    with pytest.raises(DataError) as e:
        read_sft_jsonl(path)
    assert e.value.line == 3 and e.value.field == "(row)"
    good = _write(tmp_path / "good.jsonl", [ROW, ROW])
    assert read_sft_jsonl(good) == [ROW, ROW]
