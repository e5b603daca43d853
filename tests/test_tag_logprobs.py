"""bench/tag_logprobs.py: every response target lands in exactly one class (the closing
output tag and EOS also count as themselves), on the tiny model and reference rows."""

import json
import sys
from pathlib import Path

from rftt.data import generate_arithmetic
from rftt.sft_data import write_jsonl
from rftt.solution_steps import reference_rows
from rftt.tokens import FUNCTIONAL_TOKENS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import tag_logprobs  # noqa: E402


def test_every_target_is_counted_once_in_its_class(tmp_path, capsys):
    rows = reference_rows(generate_arithmetic(5, "train", seed=3))
    data = tmp_path / "rows.jsonl"
    write_jsonl(str(data), rows)
    [result] = tag_logprobs.main(["--data", str(data), "--model", "tiny", "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == [result]
    c = result["classes"]
    tags = sum(r["response"].count(t) for r in rows for t in FUNCTIONAL_TOKENS)
    assert c["functional"]["targets"] == tags > 0
    assert c["</output>"]["targets"] == sum(r["response"].count("</output>") for r in rows) == len(rows)
    assert c["eos"]["targets"] == len(rows)  # one EOS ends each row
    assert c["other"]["targets"] > 0
    for k in c.values():
        assert k["mean_logp"] <= 0 and 0 <= k["p_above_half"] <= 1
