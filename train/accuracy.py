"""Greedy accuracy on held-out problems: the number every training stage is judged by.

Greedy decoding of the solver prompt (rftt/prompts.py) through the engine, many problems
per batch; a response is correct when its last \\boxed{} is equivalent to the gold
answer (rftt/grading/). Decoding stops at EOS or after `</output>` (a model trained
with functional tokens ends there).
"""

from __future__ import annotations

from tqdm import tqdm

from rftt.data import Problem
from rftt.grading import extract_answer, is_equiv
from rftt.prompts import solve_prompt_ids
from rftt.tokens import close_tag
from search.engine import Engine
from search.greedy import greedy_decode


def stop_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id, tokenizer.token_to_id(close_tag("output"))}
    return {i for i in ids if i is not None}


# Problems decoded together. A decode step reads every weight once however many rows it
# carries, and a row leaves the batch when it ends, so fewer, larger batches cost less:
# the 0.5B default's 200 greedy answers on 2 CPU cores took 11.4 min in one batch, 18.1 in
# batches of 64 (that run beside other work; bench/RESULTS.md, "second run").
GREEDY_BATCH = 256


def greedy_responses(model, tokenizer, questions: list[str], max_new_tokens: int, batch_size: int = GREEDY_BATCH,
                     progress: bool = True, desc: str = "greedy") -> list[str]:
    texts: list[str] = []
    bar = tqdm(total=len(questions), desc=desc, unit="problem", disable=not progress)
    for start in range(0, len(questions), batch_size):
        prompts = [solve_prompt_ids(tokenizer, q) for q in questions[start:start + batch_size]]
        engine = Engine.for_search(model, sum(len(p) for p in prompts), len(prompts), max_new_tokens)
        for ids in greedy_decode(engine, prompts, max_new_tokens, stop_ids(tokenizer), tokenizer.eos_token_id,
                                 on_finish=lambda: bar.update(1)):  # the bar moves as answers end
            texts.append(tokenizer.decode(ids))
    bar.close()
    return texts


def grade(problems: list[Problem], responses: list[str]) -> list[dict]:
    """One record per problem: question, gold, response, extracted answer, correct."""
    out = []
    for p, text in zip(problems, responses, strict=True):
        answer = extract_answer(text)
        out.append({"question": p.question, "gold": p.answer, "response": text, "answer": answer,
                    "correct": answer is not None and is_equiv(answer, p.answer), "source_id": p.source_id})
    return out


def greedy_accuracy(model, tokenizer, problems: list[Problem], max_new_tokens: int, batch_size: int = GREEDY_BATCH,
                    progress: bool = True, desc: str = "greedy") -> tuple[float, list[dict]]:
    responses = greedy_responses(model, tokenizer, [p.question for p in problems], max_new_tokens,
                                 batch_size, progress, desc)
    records = grade(problems, responses)
    return sum(r["correct"] for r in records) / max(1, len(records)), records
