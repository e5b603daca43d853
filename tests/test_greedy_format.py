"""bench/greedy_format.py: the format counts over greedy answers, on hand-made records."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDS = [
    {"response": "Plain prose. So \\boxed{5}.", "answer": "5", "gold": "5", "correct": True},
    {"response": "<clarify>\nWhat is asked\n</analysis>\n<output>\nThe answer is \\boxed{7}.\n</output>",
     "answer": "7", "gold": "7", "correct": True},
    {"response": "<analysis>\n<analysis>\n<direct_answer>\nanswer", "answer": None, "gold": "2", "correct": False},
    {"response": "<direct_answer>\n2 + 1 = 3, \\boxed{3}. The answer is \\boxed{3}. The answer is \\boxed{",
     "answer": None, "gold": "3", "correct": False},
]


def test_counts_name_each_kind_of_broken_format(tmp_path):
    directory = tmp_path / "eval_x"
    directory.mkdir()
    (directory / "greedy_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    proc = subprocess.run([sys.executable, "bench/greedy_format.py", str(directory), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (counts,) = json.loads(proc.stdout.splitlines()[-1])
    assert counts["answers"] == 4 and counts["correct"] == 2 and counts["no_answer"] == 2
    assert counts["with_steps"] == 1 and counts["first_step"] == {"clarify": 1}  # unclosed steps are not steps
    assert counts["format:mismatched_close"] == 1  # </analysis> closing <clarify>
    assert counts["format:unclosed_tag"] == 2  # the looping tags and the cut direct answer
    assert counts["format:text_outside"] == 1  # the plain prose answer
    assert counts["with_output_step"] == 1
    assert counts["gold_boxed_but_wrong"] == 1  # boxed 3, then a box cut in half


def test_a_directory_without_samples_is_named(tmp_path):
    proc = subprocess.run([sys.executable, "bench/greedy_format.py", str(tmp_path / "nope")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "nope/greedy_samples.jsonl: not found" in proc.stderr
